"""Any OpenAI-compatible HTTP server (vLLM, llama-server, trtllm-serve, ...) as a runner.

With ``runtime.launch`` unset the server runs elsewhere and this adapter is only its client;
with a launch profile (``runners.server_launch``) it starts the server itself in ``load()``
and stops it in ``close()``. Token ids never cross the wire, so ``stream`` and ``generate``
return zeros: only their counts and timing mean something. Per-chunk counts follow the rule in
``runners.sse``; the totals come from the server's ``usage`` (``stream_options.include_usage``)
and, when a stream ends without one, from ``finish_reason == "length"`` with min_tokens =
max_tokens (the server stopped at exactly max_tokens), else from re-tokenising the generated
text through the server's tokenize endpoint. ``astream`` is the real interface; the sync
methods wrap it in a private event loop. ``complete`` (quality evals) is a plain blocking
request that stops at the end of the model's turn (``runners.openai_sync``).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from runners.base import Capabilities, Completion, Delta, LoadSpec, Request, RunnerConfig
from runners.openai_sync import APIS, CONTROL_TIMEOUT_S, SyncClient, complete, completion_body
from runners.prompt_fit import fit_text
from runners.server_launch import LaunchedServer, distribution_version, launch
from runners.server_profiles import PROFILES, ServerLaunchConfig, check_kv_cache_dtype
from runners.sse import (
    TOKENIZE,
    ChunkCounter,
    close_at_loop_end,
    error_message,
    gather_lists,
    next_delta,
    parse_json,
    read_deltas,
    tokenize_answer,
)

if TYPE_CHECKING:
    import aiohttp

CAPABILITIES = Capabilities(
    streaming=True,
    batching=True,
    logits=False,
    gpu_offload=False,
    max_concurrency=None,
    async_streaming=True,
    completion=True,
)


@dataclass
class OpenAICompatConfig(ServerLaunchConfig):
    """The client settings; the launch settings (``launch`` and the profiles' keys) come from
    ``ServerLaunchConfig``, with ``model``."""

    name: str = "openai_server"
    base_url: str = "http://127.0.0.1:8000"  # the server to use when launch is null
    api: str = "completions"  # or "chat"
    api_key_env: str | None = None  # NAME of the variable holding the key, never the key
    timeout_s: float = 600.0
    ignore_eos: bool = True
    send_token_ids: bool = False  # completions only: send prompt_ids instead of the text
    max_connections: int = 0  # 0: unlimited
    tokenize_endpoint: bool = True  # False: the server has no tokenize endpoint; never ask

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(
                f"runtime.api={self.api!r} is invalid; choose one of: {', '.join(APIS)}"
            )
        if self.send_token_ids and self.api != "completions":
            raise ValueError("runtime.send_token_ids=true needs runtime.api=completions")
        if self.timeout_s <= 0 or self.max_connections < 0:
            raise ValueError("runtime.timeout_s must be > 0 and runtime.max_connections >= 0")
        self.base_url = self.base_url.rstrip("/")
        self.check_launch()
        check_kv_cache_dtype(self.kv_cache_dtype)


class OpenAICompatRunner:
    name: ClassVar[str] = "openai_server"
    Config: ClassVar[type[RunnerConfig]] = OpenAICompatConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    packages: ClassVar[tuple[str, ...]] = ("aiohttp",)
    install_hint: ClassVar[str | None] = None  # a dependency of the harness itself

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None:
        assert isinstance(config, OpenAICompatConfig)
        self.config = config
        self.spec = spec
        # blocking requests; its base_url becomes the launched server's in load()
        self.http = SyncClient(config.base_url, min(CONTROL_TIMEOUT_S, config.timeout_s))
        self.model: str | None = None
        self.listing: dict[str, Any] = {}  # the served model's entry in GET /v1/models
        self.server: LaunchedServer | None = None
        self._tokenize_shape: str | None = None
        self._special_tokens: int | None = None  # ids tokenize("") gives (BOS and the like)
        self._sessions: dict[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Task[None]]
        ] = {}
        self._runner: asyncio.Runner | None = None

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def load(self) -> None:
        import aiohttp  # noqa: F401  (fail here, not in the first request, when it is missing)

        env = self.config.api_key_env
        if env is not None:
            if not os.environ.get(env):
                raise RuntimeError(f"runtime.api_key_env names {env}, which is not set")
            self.http.headers = {"Authorization": f"Bearer {os.environ[env]}"}
        try:
            if self.config.launch is not None:
                self.server = launch(self.config, self.spec)
                self.http.base_url = self.server.url
                self._tokenize_shape = PROFILES[self.config.launch].tokenize
                self.server.wait_ready(self.config.ready_timeout_s)
            self.http.get("/health", ok=(200, 404))  # vLLM, llama-server, TGI; 404 elsewhere
            entries = [m for m in (self.http.get("/v1/models") or {}).get("data") or [] if m]
            listed = [m.get("id") for m in entries if isinstance(m, dict)]
            self.model = self.config.model or next(iter(listed), None)
            if not self.model:
                raise RuntimeError(f"{self.base_url}/v1/models lists no model")
            self.listing = next((m for m in entries if m.get("id") == self.model), {})
        except BaseException:
            self.close()
            raise

    def _tokenize_order(self) -> list[str]:
        """The tokenize bodies to try: the one that worked before or the launch profile's
        (trtllm-serve has none), else every known one."""
        if not self.config.tokenize_endpoint:
            return []
        if self._tokenize_shape is not None or self.config.launch is not None:
            return [self._tokenize_shape] if self._tokenize_shape else []
        return list(TOKENIZE)

    def _tokens(self, shape: str, status: int, raw: bytes, text: str) -> list[int] | None:
        tokens = tokenize_answer(TOKENIZE[shape][0], status, raw, text)
        if tokens:  # an empty list proves nothing: llama-server's answer to other bodies
            self._tokenize_shape = shape
        return tokens

    def _no_tokenize(self, status: int | None) -> RuntimeError:
        c = self.config
        why = f"HTTP {status}" if status else f"launch={c.launch} has none"
        why = why if c.tokenize_endpoint else "runtime.tokenize_endpoint=false"
        return RuntimeError(
            f"the server at {self.base_url} has no usable tokenize endpoint ({why}), so prompt "
            "lengths are unknown; set workload.input_tokens=null"
        )

    def tokenize(self, text: str) -> list[int]:
        """Ids from the server's tokenize endpoint: the launch profile's body shape, else each
        known shape in turn until one answers."""
        status = None
        for shape in self._tokenize_order():
            path, body = TOKENIZE[shape]
            status, raw = self.http.request("POST", path, body(text, self.model))
            if (tokens := self._tokens(shape, status, raw, text)) is not None:
                return tokens
        raise self._no_tokenize(status)

    async def _atokenize(self, text: str) -> list[int]:
        status = None
        for shape in self._tokenize_order():
            path, body = TOKENIZE[shape]
            async with self._session().post(self.base_url + path, json=body(text, self.model)) as r:
                status, raw = r.status, await r.read()
            if (tokens := self._tokens(shape, status, raw, text)) is not None:
                return tokens
        raise self._no_tokenize(status)

    async def _retokenized(self, text: str) -> int:
        """Tokens in generated text: its ids less the ids the server adds to any text."""
        count = len(await self._atokenize(text))
        if self._special_tokens is None:
            self._special_tokens = len(await self._atokenize(""))
        return max(0, count - self._special_tokens)

    def _session(self) -> aiohttp.ClientSession:
        """This loop's session, created inside it; each closes itself when its loop ends."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if (bound := self._sessions.get(loop)) and not bound[0].closed:
            return bound[0]
        self._sessions = {k: v for k, v in self._sessions.items() if not v[0].closed}
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_connections),
            headers=self.http.headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
        )
        self._sessions[loop] = (session, loop.create_task(close_at_loop_end(session)))
        return session

    def _served(self, prompt: str | list[int]) -> int | None:
        """The prompt length the server itself reports for ``prompt``: the usage of one
        non-streaming request for a single token (None when it reports no usage)."""
        assert self.model is not None
        body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "stream": False}
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        answer = self.http.post(APIS[self.config.api], body, self.config.timeout_s)
        count = (answer.get("usage") or {}).get("prompt_tokens")
        return count if isinstance(count, int) else None

    def _n_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def request_for(self, text: str, max_new_tokens: int, input_tokens: int | None) -> Request:
        """The request for ``text``, built so the server prefills exactly ``input_tokens``:
        tiled ids with ``send_token_ids``, else text cut to that length by the server's own
        tokenizer (``runners.prompt_fit``); for the chat API the template's tokens, measured
        once from usage, are taken off the message. The count recorded with it is the server's:
        the usage of a one-token request, else its tokenize endpoint's count."""
        if self.model is None:
            raise RuntimeError("runner used before load()")
        c, n = self.config, input_tokens
        if c.send_token_ids:
            ids = self.tokenize(text)
            if n is not None:
                ids = (ids * -(-n // max(len(ids), 1)))[:n]
            served = self._served(ids)
            source = "server_usage" if served is not None else "requested"
            return Request(tuple(ids), max_new_tokens, text, served or len(ids), source)
        if n is not None:
            target = n
            if c.api == "chat":
                overhead = self._served(text)
                if overhead is None:
                    raise RuntimeError(
                        f"{self.base_url} reports no usage, so the chat template's tokens "
                        "cannot be counted and workload.input_tokens cannot be met; use "
                        "runtime.api=completions"
                    )
                target = n - (overhead - self._n_tokens(text))
            text = fit_text(text, target, self._n_tokens)
        served, source = self._served(text), "server_usage"
        if served is None and c.api == "completions":
            try:
                served, source = self._n_tokens(text), "server_tokenize"
            except RuntimeError:
                served = None
        if served is None:
            return Request((), max_new_tokens, text, None, "unknown")
        return Request((), max_new_tokens, text, served, source)

    def _payload(self, request: Request) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("runner used before load()")
        c, n = self.config, request.max_new_tokens
        body: dict[str, Any] = {"model": self.model, "max_tokens": n, "min_tokens": n}
        body |= {"temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
        if c.ignore_eos:
            body["ignore_eos"] = True
        if c.send_token_ids:
            return body | {"prompt": list(request.prompt_ids)}
        if not request.prompt:
            raise ValueError("the request has no prompt text; set runtime.send_token_ids=true")
        if c.api == "chat":
            messages = [{"role": "user", "content": request.prompt}]
            return body | {"messages": messages, "max_completion_tokens": n}
        return body | {"prompt": request.prompt}

    async def astream(self, request: Request) -> AsyncGenerator[Delta, None]:
        import aiohttp

        url = self.base_url + APIS[self.config.api]
        body, counter = self._payload(request), ChunkCounter()
        try:
            async with self._session().post(url, json=body) as resp:
                if resp.status >= 400 or resp.content_type == "application/json":
                    message = error_message(await resp.read())
                    raise RuntimeError(f"{url} returned HTTP {resp.status}: {message}")
                async for delta in read_deltas(resp.content.iter_any(), counter):
                    yield delta
            if counter.usage_output is None and (
                total := await self._total_without_usage(counter, body)
            ):
                yield total
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RuntimeError(f"request to {url} failed: {e!r}") from e

    async def _total_without_usage(
        self, counter: ChunkCounter, body: dict[str, Any]
    ) -> Delta | None:
        """The output count of a stream that ended without usage (llama-cpp-python sends none).

        finish_reason "length" with max_tokens == min_tokens == n: the server says it stopped
        at n tokens. Any other finish (EOS reached, a stop string): re-tokenise the text; with
        no tokenize endpoint None, and the harness keeps the chunk count."""
        n = body["max_tokens"]
        if counter.finish_reason == "length" and body.get("min_tokens") == n:
            return Delta(tokens=0, content=False, output_tokens=n, output_source="finish_length")
        if counter.finish_reason is None:
            raise RuntimeError(
                "the stream ended without a finish_reason or usage: the server cut it short"
            )
        try:
            count = await self._retokenized(counter.generated_text)
        except RuntimeError:
            return None
        return Delta(tokens=0, content=False, output_tokens=count, output_source="retokenized")

    async def aclose(self) -> None:
        """Close this loop's session now rather than when the loop ends."""
        if bound := self._sessions.pop(asyncio.get_running_loop(), None):
            bound[1].cancel()
            await asyncio.wait([bound[1]])

    @property
    def _private_loop(self) -> asyncio.Runner:
        """The private loop of the sync methods, kept so that connections are reused."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        """``astream`` in the private loop; yields ``[0] * k`` per chunk with k > 0 tokens (a
        server client never sees token ids)."""
        deltas = self.astream(request)
        try:
            while (delta := self._private_loop.run(next_delta(deltas))) is not None:
                if delta.tokens > 0:
                    yield [0] * delta.tokens
        finally:
            if self._runner is not None:  # else close() ran first and ended the stream
                self._runner.run(deltas.aclose())

    async def _count(self, request: Request) -> list[int]:
        counted, total = 0, None
        async for delta in self.astream(request):
            counted += delta.tokens
            total = delta.output_tokens if delta.output_tokens is not None else total
        return [0] * (counted if total is None else total)

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        """All requests at once; as many zeros as the server's total says (else as counted)."""
        return self._private_loop.run(gather_lists(self._count(r) for r in batch))

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        """One non-streaming greedy request that ends where the server ends it (end of turn
        or max_tokens): ``runners.openai_sync``."""
        if self.model is None:
            raise RuntimeError("runner used before load()")
        body = completion_body(self.model, prompt, max_new_tokens, chat, self.config.launch)
        return complete(self.http, body, self.config.timeout_s, self.tokenize)

    def chat_template(self) -> str | None:
        return self.http.chat_template()

    def versions(self) -> dict[str, str]:
        import aiohttp

        info = {"server.url": self.base_url, "server.model": str(self.model)}
        info["aiohttp"] = aiohttp.__version__
        # vLLM, trtllm-serve: /version; llama-server: /props
        for path, key in (("/version", "version"), ("/props", "build_info")):
            status, raw = self.http.request("GET", path)
            body = parse_json(raw) if status == 200 else None
            if isinstance(body, dict) and body.get(key):
                info[f"server.{key}"] = str(body[key])
        info.update(model_identity(self.listing))
        info["server.model.listed"] = str(bool(self.listing)).lower()  # else: a name it accepts
        if self.server is not None:  # the argv holds no secret: keys never go on it
            info["server.launch"] = self.server.profile
            info["server.argv"] = shlex.join(self.server.argv)
        if self.config.launch == "llama_cpp_python":
            info["llama_cpp_python"] = distribution_version(self.config.python, "llama-cpp-python")
        return info

    def served_model(self) -> tuple[dict[str, float], str]:
        """What the server itself says of the model's size (llama-server's /v1/models ``meta``:
        ``n_params`` and tensor bytes), and why anything is missing."""
        return model_facts(self.listing)

    def generation_settings(self) -> dict[str, str]:
        """In the words the in-process runners use for the same behaviour (the equivalence check),
        plus how this client asks for it."""
        c, profile = self.config, PROFILES.get(self.config.launch or "")
        chat = "applied by the server (chat API)"
        return {
            "chat_template": chat if c.api == "chat" else "none (raw prompt)",
            "sampling": "greedy",  # temperature 0
            "eos": "generated and continued past (ignore_eos)"
            if c.ignore_eos and (profile is None or profile.ignore_eos)
            else "masked until max_new_tokens",
            "eos_mechanism": "min_tokens = max_tokens = max_new_tokens"
            + (", ignore_eos" if c.ignore_eos else ""),
            "special_tokens": self._special_tokens_added(),
            "prompt": "token ids" if c.send_token_ids else "text, tokenized by the server",
            "output_count": "server usage; else max_tokens when finish_reason=length; else the "
            "generated text re-tokenized by the server",
            "prefix_cache": _on_off(profile.prefix_cache) if profile else "unknown",
            "prefix_cache_detail": profile.prefix_cache if profile else "the server's own",
        }

    def _special_tokens_added(self) -> str:
        """Whether the server's tokenizer adds BOS (or the like) to a prompt."""
        try:
            self.tokenize("Hello")  # settles the tokenize body before the ambiguous ""
            added = self.tokenize("")
        except RuntimeError:
            return "unknown (no tokenize endpoint)"
        return "bos added" if added else "none added"

    def counters(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        """Close sessions whose loops are still open and idle, then stop a launched server;
        safe after every loop ended, and more than once."""
        for loop, (session, closer) in list(self._sessions.items()):
            if not session.closed and not loop.is_closed() and not loop.is_running():
                closer.cancel()
                loop.run_until_complete(asyncio.wait([closer]))
        self._sessions.clear()
        if self._runner is not None:
            self._runner.close()  # cancels its session's closer task, which closes the session
            self._runner = None
        if self.server is not None:
            self.server.stop()


def model_identity(entry: dict[str, Any]) -> dict[str, str]:
    """The served model's listing as tags: every scalar field (owned_by, root, created,
    max_model_len, ...) and llama-server's ``meta`` (n_params, size, n_ctx_train, ...)."""
    out: dict[str, str] = {}
    for key, value in entry.items():
        if key == "meta" and isinstance(value, dict):
            out |= {f"server.model.meta.{k}": str(v) for k, v in value.items() if _scalar(v)}
        elif key != "id" and _scalar(value):
            out[f"server.model.{key}"] = str(value)
    return out


def model_facts(entry: dict[str, Any]) -> tuple[dict[str, float], str]:
    """What a listing says of the model's size. llama-server's ``meta.size`` is
    ``llama_model_size``: the bytes of every tensor, not of the file, so with ``n_params`` it
    gives bits per weight by this harness's definition, and the file size stays unknown."""
    meta = entry.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    size, params = meta.get("size"), meta.get("n_params")
    facts: dict[str, float] = {}
    if isinstance(params, int | float) and params > 0:
        facts["model_params"] = float(params)
        if isinstance(size, int | float) and size > 0:
            facts["model_bpw"] = 8 * float(size) / float(params)
    why = "the server runs elsewhere and its GET /v1/models reports no " + (
        "file size (llama-server's meta.size counts tensor bytes only)" if facts else "model size"
    )
    return facts, why


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 500


def _on_off(detail: str) -> str:
    """A profile's prefix-cache note reduced to on / off / unknown, comparable across runtimes."""
    word = detail.split()[0].rstrip(":")
    return word if word in ("on", "off") else "unknown"

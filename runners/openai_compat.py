"""Any OpenAI-compatible HTTP server (vLLM, llama-server, SGLang, ...) as a runner.

The server runs elsewhere; this adapter is only its client. Token ids never cross the wire, so
``stream`` and ``generate`` return zeros: only their counts and timing mean something. A chunk
counts as one token when it carries text or reasoning (the best count without the server's
running usage, exact only when the server never coalesces tokens); ``usage`` from
``stream_options.include_usage`` gives the exact totals, and the harness compares the two.
``astream`` is the real interface; the sync methods wrap it in a private event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from runners.base import Capabilities, Delta, LoadSpec, Request, RunnerConfig

if TYPE_CHECKING:
    import aiohttp

APIS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
CONTROL_TIMEOUT_S = 30.0  # health, models, tokenize, version: small synchronous requests
CAPABILITIES = Capabilities(
    streaming=True,
    batching=True,
    logits=False,
    gpu_offload=False,
    devices=frozenset({"cpu", "cuda"}),
    methods=frozenset({"none", "gguf"}),
    precisions=frozenset({"native"}),
    max_concurrency=None,
    async_streaming=True,
)


@dataclass
class OpenAICompatConfig(RunnerConfig):
    name: str = "openai"
    base_url: str = "http://127.0.0.1:8000"
    model: str | None = None  # None: the first id that GET /v1/models lists
    api: str = "completions"  # or "chat"
    api_key_env: str | None = None  # NAME of the variable holding the key, never the key
    timeout_s: float = 600.0
    ignore_eos: bool = True
    send_token_ids: bool = False  # completions only: send prompt_ids instead of the text
    max_connections: int = 0  # 0: unlimited
    tokenize_endpoint: bool = True  # False: the server has no /tokenize; never ask it

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


def error_message(raw: bytes) -> str:
    """The server's own error text (OpenAI, FastAPI or plain body), first 200 characters."""
    body = _json(raw)
    err = body.get("error", body) if isinstance(body, dict) else raw.decode(errors="replace")
    err = (err.get("message") or err.get("detail") or err) if isinstance(err, dict) else err
    return str(err).strip()[:200]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class SSEDecoder:
    """Incremental server-sent-events decoder: bytes as they arrive in, ``data`` payloads out.

    Lines may split anywhere across reads; comments (``:``) and other fields are ignored; the
    ``data`` lines of one event are joined with newlines, as the SSE specification says."""

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        events = []
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
        return events


class ChunkCounter:
    """Turns each decoded chunk into a ``Delta``.

    One token per chunk with text or reasoning, unless the server reports running usage on
    chunks with choices from the start (vLLM ``continuous_usage_stats``): then its increments.
    """

    def __init__(self) -> None:
        self.counted = 0
        self.running_usage = False

    def feed(self, event: bytes) -> Delta:
        chunk = _json(event)
        if not isinstance(chunk, dict) or "error" in chunk:
            raise RuntimeError(f"error event in the stream: {error_message(event)}")
        return self.delta(chunk)

    def delta(self, chunk: dict[str, Any]) -> Delta:
        choices = chunk.get("choices") or []
        text, reasoning = "", ""
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content") or ""
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            else:
                text = choice.get("text") or ""
        tokens = 1 if text or reasoning else 0
        usage = chunk.get("usage")
        prompt = output = None
        if isinstance(usage, dict):
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if choices and isinstance(output, int) and (self.running_usage or not self.counted):
                self.running_usage = True
                tokens = max(0, output - self.counted)
        self.counted += tokens
        return Delta(tokens=tokens, content=bool(text), prompt_tokens=prompt, output_tokens=output)


async def _close_at_loop_end(session: aiohttp.ClientSession) -> None:
    """Parks until its loop shuts down (``asyncio.run`` cancels all tasks left), then closes."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await session.close()
        await asyncio.sleep(0)  # lets the closed transports finish


class OpenAICompatRunner:
    name: ClassVar[str] = "openai"
    Config: ClassVar[type[RunnerConfig]] = OpenAICompatConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    packages: ClassVar[tuple[str, ...]] = ("aiohttp",)

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None:
        assert isinstance(config, OpenAICompatConfig)
        self.config = config
        self.spec = spec
        self.model: str | None = None
        self._headers: dict[str, str] = {}
        self._tokenize_shape: int | None = None
        self._sessions: dict[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Task[None]]
        ] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._runner: asyncio.Runner | None = None

    def _http(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        url = self.config.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers | ({"Content-Type": "application/json"} if data else {})
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        timeout = min(CONTROL_TIMEOUT_S, self.config.timeout_s)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None

    def _get(self, path: str, ok: tuple[int, ...] = (200,)) -> Any:
        status, raw = self._http("GET", path)
        if status not in ok:
            url = self.config.base_url + path
            raise RuntimeError(f"{url} returned HTTP {status}: {error_message(raw)}")
        return _json(raw) if status == 200 else None

    def load(self) -> None:
        import aiohttp  # noqa: F401  (fail here, not in the first request, when it is missing)

        env = self.config.api_key_env
        if env is not None:
            if not os.environ.get(env):
                raise RuntimeError(f"runtime.api_key_env names {env}, which is not set")
            self._headers = {"Authorization": f"Bearer {os.environ[env]}"}
        self._get("/health", ok=(200, 404))  # vLLM, llama-server, TGI; 404 elsewhere
        listed = [m.get("id") for m in (self._get("/v1/models") or {}).get("data") or []]
        self.model = self.config.model or next(iter(listed), None)
        if not self.model:
            raise RuntimeError(f"{self.config.base_url}/v1/models lists no model")

    def tokenize(self, text: str) -> list[int]:
        """Ids from POST /tokenize: the vLLM body shape first, then llama-server's (which
        answers an empty list, not an error, to a body it does not understand)."""
        shapes = [{"model": self.model, "prompt": text}, {"content": text, "add_special": True}]
        order = [self._tokenize_shape] if self._tokenize_shape is not None else [0, 1]
        why = "runtime.tokenize_endpoint=false"
        for i in order if self.config.tokenize_endpoint else []:
            status, raw = self._http("POST", "/tokenize", shapes[i])
            if status in (401, 403) or status >= 500:
                raise RuntimeError(f"/tokenize returned HTTP {status}: {error_message(raw)}")
            body, why = _json(raw) if status == 200 else None, f"HTTP {status}"
            tokens = body.get("tokens") if isinstance(body, dict) else None
            if isinstance(tokens, list) and (tokens or not text.strip()):
                self._tokenize_shape = i
                return [int(t) for t in tokens]
        raise RuntimeError(
            f"the server at {self.config.base_url} has no usable /tokenize ({why}), so prompt "
            "lengths are unknown; set workload.input_tokens=null"
        )

    def _session(self) -> aiohttp.ClientSession:
        """This loop's session, created inside it; each closes itself when its loop ends."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if (bound := self._sessions.get(loop)) and not bound[0].closed:
            return bound[0]
        self._sessions = {k: v for k, v in self._sessions.items() if not v[0].closed}
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_connections),
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
        )
        self._sessions[loop] = (session, loop.create_task(_close_at_loop_end(session)))
        return session

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
        if request.prompt_ids and not request.prompt:
            raise ValueError("the request has no prompt text; set runtime.send_token_ids=true")
        if c.api == "chat":
            messages = [{"role": "user", "content": request.prompt}]
            return body | {"messages": messages, "max_completion_tokens": n}
        return body | {"prompt": request.prompt}

    async def astream(self, request: Request) -> AsyncGenerator[Delta, None]:
        import aiohttp

        url = self.config.base_url + APIS[self.config.api]
        try:
            async with self._session().post(url, json=self._payload(request)) as resp:
                if resp.status >= 400 or resp.content_type == "application/json":
                    message = error_message(await resp.read())
                    raise RuntimeError(f"{url} returned HTTP {resp.status}: {message}")
                decoder, counter, done = SSEDecoder(), ChunkCounter(), False
                async for data in resp.content.iter_any():
                    for event in decoder.feed(data):
                        done = done or event == b"[DONE]"
                        if not done:  # after [DONE] read on to the end: the connection is reused
                            yield counter.feed(event)
                for event in [] if done else decoder.feed(b"\n\n"):  # no final blank line
                    if event != b"[DONE]":
                        yield counter.feed(event)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RuntimeError(f"request to {url} failed: {e!r}") from e

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
            while (delta := self._private_loop.run(_next(deltas))) is not None:
                if delta.tokens > 0:
                    yield [0] * delta.tokens
        finally:
            if self._runner is not None:  # else close() ran first and ended the stream
                self._runner.run(deltas.aclose())

    async def _count(self, request: Request) -> list[int]:
        counted, usage = 0, None
        async for delta in self.astream(request):
            counted += delta.tokens
            usage = delta.output_tokens if delta.output_tokens is not None else usage
        return [0] * (counted if usage is None else usage)

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        """All requests at once; as many zeros as the server's usage says (else as counted)."""
        return self._private_loop.run(_gather(self._count(r) for r in batch))

    def versions(self) -> dict[str, str]:
        import aiohttp

        info = {"server.url": self.config.base_url, "server.model": str(self.model)}
        info["aiohttp"] = aiohttp.__version__
        for path, key in (("/version", "version"), ("/props", "build_info")):
            status, raw = self._http("GET", path)  # vLLM has /version, llama-server /props
            body = _json(raw) if status == 200 else None
            if isinstance(body, dict) and body.get(key):
                info[f"server.{key}"] = str(body[key])
        return info

    def counters(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        """Close sessions whose loops are still open and idle; safe after every loop ended."""
        for loop, (session, closer) in list(self._sessions.items()):
            if not session.closed and not loop.is_closed() and not loop.is_running():
                closer.cancel()
                loop.run_until_complete(asyncio.wait([closer]))
        self._sessions.clear()
        if self._runner is not None:
            self._runner.close()  # cancels its session's closer task, which closes the session
            self._runner = None


async def _gather(coros: Iterable[Awaitable[list[int]]]) -> list[list[int]]:
    return list(await asyncio.gather(*coros))


async def _next(deltas: AsyncIterator[Delta]) -> Delta | None:
    return await anext(deltas, None)

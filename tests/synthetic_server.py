"""A synthetic OpenAI-compatible streaming server for testing the load generator and the
server runner. Its latencies are injected with ``asyncio.sleep``: NEVER report its numbers.

``python tests/synthetic_server.py --port 0`` prints ``LISTENING http://host:port`` once bound
and serves until SIGTERM/SIGINT. A prompt word is a token; each generated token is `` tok``.
Chat streams send a role-only chunk at once; then ``ttft_s`` passes before the first chunk of
``tokens_per_chunk`` tokens and ``itl_s`` between chunks; ``--reasoning-tokens N`` sends a chat
reply's first N tokens as ``reasoning_content``; ``stream_options.continuous_usage_stats`` (vLLM)
puts running usage on every chunk. Like servers seen in the wild, ``--no-usage`` never sends usage
(llama-cpp-python), ``--finish-reason stop`` ends as if EOS came, and ``--tokenize`` picks the
tokenize bodies understood. Faults, for error handling, after ``--fault-after N`` token chunks:
``http_503`` (an error status before any chunk), ``error_event`` (an error object in the stream,
as vLLM sends), ``abort`` (the connection drops mid-body), ``truncate`` (the body ends early
and cleanly, with no finish_reason, usage or [DONE]). ``ServerProcess`` runs it as a subprocess."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"
KINDS = {  # id, streamed object, non-streamed object
    "completions": ("cmpl-synthetic", "text_completion", "text_completion"),
    "chat": ("chatcmpl-synthetic", "chat.completion.chunk", "chat.completion"),
}
# /tokenize with vLLM's and llama-server's bodies, llama-server's only, llama-cpp-python's
# /extras/tokenize only, none
TOKENIZE_SHAPES = ("both", "llama", "extras", "none")
FAULTS = ("none", "http_503", "error_event", "abort", "truncate")
FINISH_REASONS = ("length", "stop")
ERROR_EVENT = b'data: {"error": {"message": "synthetic fault: out of memory", "code": 500}}\n\n'


def bad_request(message: str, cls: type[web.HTTPException] = web.HTTPBadRequest) -> Exception:
    """An HTTP error with an OpenAI-style body, to raise from a handler."""
    error = {"message": message, "type": "invalid_request_error", "code": None}
    return cls(text=json.dumps({"error": error}), content_type="application/json")


def usage_block(prompt: int, completion: int) -> dict[str, int]:
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


@dataclass
class Settings:
    model: str = "synthetic"
    ttft_s: float = 0.002
    itl_s: float = 0.001
    tokens_per_chunk: int = 1
    reasoning_tokens: int = 0
    tokenize: str = "both"  # the /tokenize bodies understood: TOKENIZE_SHAPES
    finish_reason: str = "length"  # on the last token chunk: FINISH_REASONS
    fault: str = "none"  # FAULTS
    fault_after: int = 2  # token chunks sent before the fault strikes
    usage: bool = True  # False: no usage even when stream_options.include_usage asks
    api_key: str | None = None  # the expected bearer token (from --require-key's variable)
    _cache: dict[tuple[Any, ...], bytes] = field(default_factory=dict, repr=False)

    def sse(self, kind: str, delta: tuple[str, str] | None, finish: Any, usage: Any) -> bytes:
        """One SSE event; constant ones (no usage) are built once and reused."""
        key = (kind, delta, finish)
        if usage is None and (hit := self._cache.get(key)):
            return hit
        choices: list[dict[str, Any]] = []
        if delta is not None:
            text = {"text": delta[1]} if kind == "completions" else {"delta": dict([delta])}
            choices.append({"index": 0, "logprobs": None, "finish_reason": finish} | text)
        ident, obj, _ = KINDS[kind]
        body = {"id": ident, "object": obj, "created": 0, "model": self.model, "choices": choices}
        data = b"data: " + json.dumps(body | ({"usage": usage} if usage else {})).encode()
        if usage is None:
            self._cache[key] = data + b"\n\n"
        return data + b"\n\n"

    def plan(self, kind: str, n: int) -> list[tuple[str, int]]:
        """(field, tokens) per token chunk: reasoning first (chat only), then content."""
        reasoning = min(self.reasoning_tokens, n) if kind == "chat" else 0
        key = "text" if kind == "completions" else "content"
        step = self.tokens_per_chunk
        out = [("reasoning_content", min(step, reasoning - i)) for i in range(0, reasoning, step)]
        return out + [(key, min(step, n - reasoning - i)) for i in range(0, n - reasoning, step)]


def _words(text: Any, name: str = "prompt") -> int:
    if not isinstance(text, str):
        raise bad_request(f"'{name}' must be a string or a list of token ids")
    return len(text.split())


def parse_request(kind: str, body: dict[str, Any]) -> tuple[int, int]:
    """(max_tokens, prompt tokens) of a generation request, or a 400 error."""
    n = body.get("max_completion_tokens") if kind == "chat" else None
    n = body.get("max_tokens", 16) if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad_request(f"'max_tokens' must be a positive integer, got {n!r}")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty list")
        contents = (m.get("content") if isinstance(m, dict) else m for m in messages)
        return n, sum(_words(text, "content") for text in contents)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return n, len(prompt)
    return n, _words(prompt)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError as e:
        raise bad_request(f"invalid JSON body: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("the JSON body must be an object")
    return body


async def stream(
    request: web.Request, s: Settings, kind: str, body: dict[str, Any]
) -> web.StreamResponse:
    (n, prompt), options = parse_request(kind, body), body.get("stream_options") or {}
    running = bool(options.get("continuous_usage_stats"))
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    if kind == "chat":
        role = ("role", "assistant")
        await resp.write(s.sse(kind, role, None, usage_block(prompt, 0) if running else None))
    plan, done = s.plan(kind, n), 0
    for i, (key, ntok) in enumerate(plan):
        if i == s.fault_after and s.fault != "none":
            return await fault(request, resp, s.fault)
        if (delay := s.itl_s if i else s.ttft_s) > 0:
            await asyncio.sleep(delay)
        done += ntok
        finish = s.finish_reason if i == len(plan) - 1 else None
        usage = usage_block(prompt, done) if running else None
        await resp.write(s.sse(kind, (key, " tok" * ntok), finish, usage))
    if options.get("include_usage") and s.usage:
        await resp.write(s.sse(kind, None, None, usage_block(prompt, n)))
    await resp.write(DONE)
    await resp.write_eof()
    return resp


async def fault(request: web.Request, resp: web.StreamResponse, kind: str) -> web.StreamResponse:
    """End a started stream the way ``kind`` says."""
    if kind == "error_event":
        await resp.write(ERROR_EVENT + DONE)
    elif kind == "abort":
        assert request.transport is not None
        request.transport.abort()  # no terminating chunk: the client sees a broken body
        return resp
    await resp.write_eof()
    return resp


async def complete(s: Settings, kind: str, body: dict[str, Any]) -> web.Response:
    n, prompt = parse_request(kind, body)
    plan = s.plan(kind, n)
    await asyncio.sleep(s.ttft_s + s.itl_s * (len(plan) - 1))
    texts: dict[str, Any] = {key: " tok" * sum(k for f, k in plan if f == key) for key, _ in plan}
    if kind == "chat":
        texts = {"message": {"role": "assistant", "content": texts.get("content", "")} | texts}
    choice = {"index": 0, "logprobs": None, "finish_reason": "length"} | texts
    ident, _, obj = KINDS[kind]
    body = {"id": ident, "object": obj, "created": 0, "model": s.model, "choices": [choice]}
    return web.json_response(body | {"usage": usage_block(prompt, n)})


def generation(kind: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if request.app[SETTINGS].fault == "http_503":
            raise bad_request(
                "synthetic fault: the server is overloaded", web.HTTPServiceUnavailable
            )
        try:
            if body.get("stream"):
                return await stream(request, request.app[SETTINGS], kind, body)
            return await complete(request.app[SETTINGS], kind, body)
        except ConnectionResetError:  # the client left (a timeout): not an error to log
            return web.Response(status=499)

    return handle


async def extras_tokenize(request: web.Request) -> web.StreamResponse:
    """llama-cpp-python's body: {"input": text}."""
    text = (await read_json(request)).get("input")
    if not isinstance(text, str):
        raise bad_request("'input' must be a string")
    return web.json_response({"tokens": [len(word) % 1000 for word in text.split()]})


async def tokenize(request: web.Request) -> web.StreamResponse:
    body, llama_only = await read_json(request), request.app[SETTINGS].tokenize == "llama"
    text = body.get("content", None if llama_only else body.get("prompt"))
    if text is None and llama_only:
        return web.json_response({"tokens": []})  # what llama-server answers to {"prompt": ...}
    if not isinstance(text, str):
        raise bad_request("'prompt' (vLLM) or 'content' (llama-server) must be a string")
    tokens = [len(word) % 1000 for word in text.split()]
    return web.json_response({"tokens": tokens, "count": len(tokens)})


@web.middleware
async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.headers.get("Authorization")
    if request.path != "/health" and auth != f"Bearer {request.app[SETTINGS].api_key}":
        raise bad_request("Incorrect API key provided.", web.HTTPUnauthorized)
    return await handler(request)


def constant(body: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    return handle


SETTINGS = web.AppKey("settings", Settings)


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[check_key] if settings.api_key else [])
    app[SETTINGS] = settings
    app.router.add_get("/health", constant({"status": "ok"}))
    models = [{"id": settings.model, "object": "model"}]
    app.router.add_get("/v1/models", constant({"object": "list", "data": models}))
    if settings.tokenize in ("both", "llama"):
        app.router.add_post("/tokenize", tokenize)
    if settings.tokenize == "extras":
        app.router.add_post("/extras/tokenize", extras_tokenize)
    app.router.add_post("/v1/completions", generation("completions"))
    app.router.add_post("/v1/chat/completions", generation("chat"))
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(settings), access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=4096).start()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # before LISTENING: a signal may follow it
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        bound = runner.addresses[0][1]
        print(f"LISTENING http://{f'[{host}]' if ':' in host else host}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


CLI_FIELDS = [f for f in fields(Settings) if f.name not in ("usage", "api_key", "_cache")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Synthetic OpenAI-compatible server (tests only).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--require-key", metavar="ENVVAR", help="401 unless 'Bearer $ENVVAR' is sent")
    p.add_argument("--no-usage", dest="usage", action="store_false", help="never send usage")
    choices = {"tokenize": TOKENIZE_SHAPES, "fault": FAULTS, "finish_reason": FINISH_REASONS}
    for f in CLI_FIELDS:
        flag, kind = f"--{f.name.replace('_', '-')}", type(f.default)
        p.add_argument(flag, type=kind, default=f.default, choices=choices.get(f.name))
    a = p.parse_args(argv)
    if a.tokens_per_chunk < 1 or a.fault_after < 0:
        p.error("need --tokens-per-chunk >= 1 and --fault-after >= 0")
    key = os.environ.get(a.require_key) if a.require_key else None
    if a.require_key and not key:
        p.error(f"--require-key: environment variable {a.require_key} is not set")
    values = {f.name: getattr(a, f.name) for f in CLI_FIELDS}
    asyncio.run(serve(Settings(**values, usage=a.usage, api_key=key), a.host, a.port))
    return 0


class ServerProcess:
    """``python tests/synthetic_server.py *args`` for the duration of a ``with`` block;
    ``cpu`` pins it to one core (Linux), ``env`` adds variables, ``returncode`` is set on exit."""

    def __init__(
        self,
        *args: str,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.argv = [sys.executable, str(Path(__file__).resolve()), *args]
        self.env = {**os.environ, **(env or {})}
        self.cpu, self.start_timeout_s = cpu, start_timeout_s
        self.url = ""
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        # stderr is inherited: a failing server's traceback lands where the caller's would
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, env=self.env)
        try:
            if self.cpu is not None:
                os.sched_setaffinity(self._proc.pid, {self.cpu})
            self.url = self._wait_listening(self._proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_listening(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        while select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"synthetic server exited ({proc.wait()}) before listening")
            if line.startswith("LISTENING "):
                return line.split()[1]
        raise TimeoutError(f"synthetic server not listening after {self.start_timeout_s} s")

    def __exit__(self, *exc_info: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            self.returncode = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.returncode = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())

"""What OpenAI-compatible servers send: server-sent events (bytes in, ``Delta`` per chunk
out), error bodies, and the tokenize bodies each server understands; plus the small asyncio
helpers the client runner uses around them.

How many tokens a chunk holds, when the server sends no running usage (one rule for every
server, from what each is seen to send):

- a chunk whose first choice has text or reasoning counts 1;
- a chunk with a choice, ``finish_reason`` null and NO text also counts 1, unless it is a chat
  chunk announcing the role (``delta`` has ``role``). Servers send such chunks for tokens that
  detokenize to nothing: llama-cpp-python 0.3.36 sends ``{"text": ""}`` for every special token
  it generates (checked with SmolLM2-135M-Instruct: the raw prompt
  ``"<|im_start|>user\\nHi there<|im_end|>\\n"`` makes it generate ``<|im_start|>`` first,
  which arrives as a chunk with text "" and is one of the ``max_tokens`` it reports), and vLLM
  sends a chunk with ``delta_text`` "" when a token's text is held back (special tokens,
  incomplete UTF-8);
- a chunk carrying ``finish_reason`` counts 1 only with text: llama-cpp-python closes every
  stream with an extra empty chunk ``{"text": "", "finish_reason": "length"}`` that is no token
  (llama-server likewise), while vLLM puts ``finish_reason`` on the last token's own chunk;
- chunks without choices (usage, keep-alives) count 0.

A chunk may still hold more than one token: llama-cpp-python joins the tokens of one multi-byte
character (an emoji) into one chunk, llama-server and vLLM may coalesce under load. The totals
therefore come from the server's usage block, or the fallbacks in the runner.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from runners.base import Delta

if TYPE_CHECKING:
    import aiohttp

# Tokenize request bodies by server: vLLM's (also SGLang's), llama-server's (it answers an
# empty list, not an error, to a body it does not understand) and llama-cpp-python's (0.3.36:
# POST /extras/tokenize {"input": text} -> {"tokens": [...]}, BOS included where the model adds
# one, special tokens parsed).
TOKENIZE: dict[str, tuple[str, Callable[[str, str | None], dict[str, Any]]]] = {
    "vllm": ("/tokenize", lambda text, model: {"model": model, "prompt": text}),
    "llama_server": ("/tokenize", lambda text, model: {"content": text, "add_special": True}),
    "llama_cpp_python": ("/extras/tokenize", lambda text, model: {"input": text}),
}


def parse_json(raw: bytes) -> Any:
    """The decoded body, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def error_message(raw: bytes) -> str:
    """The server's own error text (OpenAI, FastAPI or plain body), first 200 characters."""
    body = parse_json(raw)
    err = body.get("error", body) if isinstance(body, dict) else raw.decode(errors="replace")
    err = (err.get("message") or err.get("detail") or err) if isinstance(err, dict) else err
    return str(err).strip()[:200]


def tokenize_answer(path: str, status: int, raw: bytes, text: str) -> list[int] | None:
    """The ids in a tokenize answer; None when it is no answer to this body (404, or an empty
    list for non-blank text). Authentication and server errors raise."""
    if status in (401, 403) or status >= 500:
        raise RuntimeError(f"{path} returned HTTP {status}: {error_message(raw)}")
    body = parse_json(raw) if status == 200 else None
    tokens = body.get("tokens") if isinstance(body, dict) else None
    if isinstance(tokens, list) and (tokens or not text.strip()):
        return [int(t) for t in tokens]
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


def _choice_parts(choice: dict[str, Any]) -> tuple[str, str, bool]:
    """(content, reasoning, announces the role) of one streamed choice."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):  # completions API
        return choice.get("text") or "", "", False
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return delta.get("content") or "", reasoning, "role" in delta


class ChunkCounter:
    """Turns each decoded chunk into a ``Delta`` (the counting rule is the module docstring)
    and keeps what a stream ending without usage needs: the last ``finish_reason``, whether
    usage came, and the generated text.

    When the server reports running usage on chunks with choices from the start (vLLM
    ``continuous_usage_stats``), its increments replace the rule."""

    def __init__(self) -> None:
        self.counted = 0
        self.running_usage = False
        self.usage_output: int | None = None
        self.finish_reason: str | None = None
        self.text: list[str] = []

    def feed(self, event: bytes, last: bool = False) -> Delta:
        """``last``: the connection ended without the event's closing blank line."""
        chunk = parse_json(event)
        if chunk is None:
            shown = event[:80].decode(errors="replace")
            if last:  # the connection ended inside the event
                raise RuntimeError(f"the stream was cut inside an event: {shown!r}")
            raise RuntimeError(f"the server sent an event that is not JSON: {shown!r}")
        if not isinstance(chunk, dict) or "error" in chunk:
            raise RuntimeError(f"error event in the stream: {error_message(event)}")
        return self.delta(chunk)

    def _tokens(self, choices: list[Any]) -> tuple[int, str]:
        if not choices or not isinstance(choices[0], dict):
            return 0, ""
        text, reasoning, role = _choice_parts(choices[0])
        self.text += [reasoning, text]
        finish = choices[0].get("finish_reason")
        self.finish_reason = finish or self.finish_reason
        empty_token = finish is None and not role
        return (1 if text or reasoning or empty_token else 0), text

    def delta(self, chunk: dict[str, Any]) -> Delta:
        choices = chunk.get("choices") or []
        tokens, text = self._tokens(choices)
        usage = chunk.get("usage")
        prompt = output = None
        if isinstance(usage, dict):
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(output, int):
                self.usage_output = output
                if choices and (self.running_usage or not self.counted):
                    self.running_usage = True
                    tokens = max(0, output - self.counted)
        self.counted += tokens
        return Delta(tokens=tokens, content=bool(text), prompt_tokens=prompt, output_tokens=output)

    @property
    def generated_text(self) -> str:
        return "".join(self.text)


async def read_deltas(chunks: AsyncIterable[bytes], counter: ChunkCounter) -> AsyncIterator[Delta]:
    """The chunks of one SSE response up to ``[DONE]``; the body is read to its end even after
    ``[DONE]`` so that the connection can be reused."""
    decoder, done = SSEDecoder(), False
    async for data in chunks:
        for event in decoder.feed(data):
            done = done or event == b"[DONE]"
            if not done:
                yield counter.feed(event)
    for event in [] if done else decoder.feed(b"\n\n"):  # no final blank line
        if event != b"[DONE]":
            yield counter.feed(event, last=True)


async def close_at_loop_end(session: aiohttp.ClientSession) -> None:
    """Parks until its loop shuts down (``asyncio.run`` cancels all tasks left), then closes."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await session.close()
        await asyncio.sleep(0)  # lets the closed transports finish


async def gather_lists(coros: Iterable[Awaitable[list[int]]]) -> list[list[int]]:
    return list(await asyncio.gather(*coros))


async def next_delta(deltas: AsyncIterator[Delta]) -> Delta | None:
    return await anext(deltas, None)

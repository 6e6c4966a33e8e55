"""The OpenAI-compatible runner against the real synthetic server on loopback."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners import AsyncStreaming, Delta, LoadSpec, Request, Runner, get_runner
from runners.openai_compat import OpenAICompatConfig, OpenAICompatRunner
from runners.sse import ChunkCounter, SSEDecoder, read_deltas
from tests.synthetic_server import ServerProcess

KEY_ENV = "HARNESS_TEST_OPENAI_KEY"
KEY = "sk-test-9f8e7d6c5b4a"
PROMPT = "one two three four five"


def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    with ServerProcess("--ttft-s", "0.002", "--itl-s", "0.0005", *args, env=env) as server:
        yield server.url


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    yield from serve("--model", "tiny-model")


@pytest.fixture(scope="module")
def coalescing_url() -> Iterator[str]:
    yield from serve("--tokens-per-chunk", "4")


@pytest.fixture(scope="module")
def reasoning_url() -> Iterator[str]:
    yield from serve("--reasoning-tokens", "3")


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    yield from serve("--require-key", KEY_ENV, env={KEY_ENV: KEY})


def make(url: str, **config: Any) -> OpenAICompatRunner:
    runner = OpenAICompatRunner(
        OpenAICompatConfig(base_url=url, **config), LoadSpec(Path(), "cpu", 1)
    )
    runner.load()
    return runner


def request(n: int = 8, prompt: str = PROMPT) -> Request:
    return Request(prompt_ids=tuple(range(len(prompt.split()))), max_new_tokens=n, prompt=prompt)


def collect(runner: OpenAICompatRunner, req: Request) -> list[Delta]:
    async def run() -> list[Delta]:
        return [delta async for delta in runner.astream(req)]

    return asyncio.run(run())


def test_registered_and_protocols() -> None:
    cls = get_runner("openai_server")
    assert cls is OpenAICompatRunner
    runner = cls(OpenAICompatConfig(), LoadSpec(Path(), "cpu", 1))
    assert isinstance(runner, Runner) and isinstance(runner, AsyncStreaming)
    assert cls.capabilities.async_streaming and cls.capabilities.max_concurrency is None


def test_completions_stream(url: str) -> None:
    deltas = collect(make(url), request(8))
    tokens = [d for d in deltas if d.tokens]
    assert sum(d.tokens for d in deltas) == 8 and len(tokens) == 8
    assert all(d.content and d.tokens == 1 for d in tokens)
    assert deltas[-1] == Delta(tokens=0, content=False, prompt_tokens=5, output_tokens=8)


def test_chat_stream_starts_with_a_role_only_chunk(url: str) -> None:
    deltas = collect(make(url, api="chat"), request(6))
    assert deltas[0] == Delta(tokens=0, content=False)
    assert sum(d.tokens for d in deltas) == 6
    assert (deltas[-1].prompt_tokens, deltas[-1].output_tokens) == (5, 6)


def test_token_ids_are_sent_instead_of_text(url: str) -> None:
    req = Request(prompt_ids=(7,) * 12, max_new_tokens=3, prompt="")
    deltas = collect(make(url, send_token_ids=True), req)
    assert deltas[-1].prompt_tokens == 12
    with pytest.raises(ValueError, match="send_token_ids=true"):
        collect(make(url), req)  # ids but no text: nothing the runner could send


def test_reasoning_tokens_are_not_content(reasoning_url: str) -> None:
    deltas = [d for d in collect(make(reasoning_url, api="chat"), request(8)) if d.tokens]
    assert [d.content for d in deltas] == [False] * 3 + [True] * 5
    assert sum(d.tokens for d in deltas) == 8


def test_coalesced_chunks_undercount_and_usage_tells(coalescing_url: str) -> None:
    runner = make(coalescing_url)
    deltas = collect(runner, request(10))
    assert sum(d.tokens for d in deltas) == 3  # chunks of 4, 4 and 2 tokens: one each
    assert deltas[-1].output_tokens == 10  # the exact count the harness compares against
    assert [len(chunk) for chunk in runner.stream(request(10))] == [1, 1, 1]
    assert [len(out) for out in runner.generate([request(10), request(5)])] == [10, 5]
    runner.close()


def test_running_usage_replaces_chunk_counting() -> None:
    counter = ChunkCounter()
    usage = [{"prompt_tokens": 5, "completion_tokens": n} for n in (0, 4, 8, 10, 10)]
    role = {"choices": [{"delta": {"role": "assistant"}}], "usage": usage[0]}
    chunks = [role] + [{"choices": [{"delta": {"content": "x"}}], "usage": u} for u in usage[1:4]]
    chunks.append({"choices": [], "usage": usage[4]})
    deltas = [counter.delta(c) for c in chunks]
    assert [d.tokens for d in deltas] == [0, 4, 4, 2, 0]
    assert deltas[-1].output_tokens == 10


def test_usage_on_the_last_content_chunk_is_not_running_usage() -> None:
    counter = ChunkCounter()
    chunks: list[dict[str, Any]] = [{"choices": [{"text": "a"}]}, {"choices": [{"text": "b"}]}]
    chunks.append({"choices": [{"text": "c"}], "usage": {"completion_tokens": 3}})
    assert [counter.delta(c).tokens for c in chunks] == [1, 1, 1]


def test_error_events_raise() -> None:
    with pytest.raises(RuntimeError, match="error event in the stream: out of memory"):
        ChunkCounter().feed(b'{"error": {"message": "out of memory", "code": 500}}')
    with pytest.raises(RuntimeError, match="an event that is not JSON: 'not json'"):
        ChunkCounter().feed(b"not json")


def test_server_gone_mid_stream_is_a_runtime_error() -> None:
    server = ServerProcess("--ttft-s", "0", "--itl-s", "0.01").__enter__()
    runner = make(server.url)

    async def run() -> None:
        async for _ in runner.astream(request(1000)):
            server.__exit__()  # blocks until the server is gone

    with pytest.raises(RuntimeError, match=f"request to {server.url}/v1/completions failed"):
        asyncio.run(run())
    assert server.returncode == 0


def test_sse_decoder_survives_any_split() -> None:
    stream = b': keepalive\r\n\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: {"b":\ndata: 2}\n\n'
    stream += b"data: [DONE]\n\n"
    expected = [b'{"a": 1}', b'{"b":\n2}', b"[DONE]"]
    for cut in range(len(stream) + 1):
        decoder = SSEDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == expected
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail-without-blank-line") == []
    assert decoder.feed(b"\n\n") == [b"tail-without-blank-line"]


def test_sync_stream_yields_zeros_per_chunk(url: str) -> None:
    runner = make(url)
    assert list(runner.stream(request(4))) == [[0]] * 4
    assert list(runner.stream(request(2))) == [[0]] * 2
    assert len(runner._sessions) == 1  # one private loop, so connections are reused
    partial = runner.stream(request(50))
    next(partial)
    partial.close()  # type: ignore[attr-defined]  # abandoning it releases its connection
    runner.close()
    assert not runner._sessions


def test_tokenize_every_body_shape(url: str) -> None:
    assert make(url).tokenize("a bb cccc") == [1, 2, 4]
    with ServerProcess("--tokenize", "llama") as llama:
        runner = make(llama.url)
        assert runner.tokenize("a bb cccc") == [1, 2, 4]  # fell back to {"content": ...}
        assert runner.tokenize("dd") == [2]
        assert runner._tokenize_shape == "llama_server"
    with ServerProcess("--tokenize", "extras") as extras:
        runner = make(extras.url)
        assert runner.tokenize("a bb cccc") == [1, 2, 4]  # /extras/tokenize {"input": ...}
        assert runner._tokenize_shape == "llama_cpp_python"


def test_tokenize_missing_endpoint(url: str) -> None:
    with pytest.raises(RuntimeError, match=r"no usable tokenize endpoint.*input_tokens=null"):
        make(url, tokenize_endpoint=False).tokenize("a b")
    with ServerProcess("--tokenize", "none") as bare, pytest.raises(RuntimeError, match="404"):
        make(bare.url).tokenize("a b")


def test_model_resolved_and_versions(url: str) -> None:
    runner = make(url)
    assert runner.model == "tiny-model"
    versions = runner.versions()
    assert versions["server.url"] == url and versions["server.model"] == "tiny-model"
    assert "aiohttp" in versions
    assert make(url, model="alias").model == "alias"


def test_unreachable_server_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the runner connects
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match=f"cannot reach .*{url}"):
        make(url)


def test_bad_api_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"runtime.api='responses'.*completions, chat"):
        OpenAICompatConfig(api="responses")


def test_http_error_carries_the_server_message(url: str) -> None:
    with pytest.raises(RuntimeError, match=r"HTTP 400: 'max_tokens' must be a positive integer"):
        collect(make(url), request(0))


def test_api_key_from_the_named_variable(keyed_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(RuntimeError, match=r"HTTP 401: Incorrect API key"):
        make(keyed_url)
    with pytest.raises(RuntimeError, match=f"{KEY_ENV}, which is not set"):
        make(keyed_url, api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, KEY)
    runner = make(keyed_url, api_key_env=KEY_ENV)
    assert sum(d.tokens for d in collect(runner, request(3))) == 3
    for text in (repr(runner.config), repr(runner), str(runner.versions())):
        assert KEY not in text


def test_sessions_follow_the_event_loop(url: str) -> None:
    runner = make(url)
    for _ in range(2):  # one asyncio.run per repetition, as the harness does
        assert sum(d.tokens for d in collect(runner, request(2))) == 2
    gc.collect()
    assert all(session.closed for session, _ in runner._sessions.values())
    runner.close()

    async def explicit() -> None:
        assert sum([d.tokens async for d in runner.astream(request(2))]) == 2
        await runner.aclose()

    asyncio.run(explicit())


def test_many_concurrent_streams(url: str) -> None:
    runner = make(url)
    n = 200

    async def run() -> list[int]:
        async def one() -> int:
            return sum([d.tokens async for d in runner.astream(request(16))])

        return list(await asyncio.gather(*(one() for _ in range(n))))

    start = time.perf_counter()
    counts = asyncio.run(run())
    elapsed = time.perf_counter() - start
    assert counts == [16] * n
    print(f"{n} concurrent streams of 16 tokens in {elapsed:.2f} s ({n / elapsed:.0f} req/s)")


def test_generation_settings(url: str) -> None:
    settings = make(url, api="chat").generation_settings()
    assert settings["chat_template"] == "applied by the server (chat API)"
    assert settings["sampling"] == "greedy"
    assert settings["eos"] == "generated and continued past (ignore_eos)"
    assert settings["special_tokens"] == "none added"  # the synthetic tokenizer adds nothing
    assert settings["prefix_cache"] == "unknown"
    assert settings["prefix_cache_detail"] == "the server's own"
    plain = make(url, ignore_eos=False, tokenize_endpoint=False).generation_settings()
    assert plain["chat_template"] == "none (raw prompt)"
    assert plain["eos"] == "masked until max_new_tokens"
    assert plain["special_tokens"] == "unknown (no tokenize endpoint)"
    assert OpenAICompatConfig().model_format() is None  # an external server: no local model


# -- counting without usage, as llama-cpp-python streams --------------------------------------


def test_no_usage_and_finish_length_counts_max_tokens() -> None:
    with ServerProcess("--ttft-s", "0", "--itl-s", "0", "--no-usage") as server:
        deltas = collect(make(server.url), request(7))
    assert sum(d.tokens for d in deltas) == 7
    assert deltas[-1] == Delta(0, False, output_tokens=7, output_source="finish_length")
    assert all(d.output_tokens is None for d in deltas[:-1])


def test_no_usage_and_another_finish_retokenizes_the_text() -> None:
    args = ("--ttft-s", "0", "--itl-s", "0", "--no-usage", "--finish-reason", "stop")
    with ServerProcess(*args, "--tokens-per-chunk", "2") as server:
        runner = make(server.url)
        deltas = collect(runner, request(9))
        assert runner._special_tokens == 0  # tokenize("") is empty: no BOS to subtract
    assert sum(d.tokens for d in deltas) == 5  # chunks of 2, 2, 2, 2 and 1 tokens
    assert deltas[-1] == Delta(0, False, output_tokens=9, output_source="retokenized")
    with ServerProcess(*args, "--tokenize", "none") as bare:
        deltas = collect(make(bare.url), request(4))
    assert [d.output_tokens for d in deltas] == [None] * 4  # no way to count: the chunks tell


def test_a_stream_cut_short_without_finish_reason_is_an_error() -> None:
    with ServerProcess("--fault", "truncate", "--fault-after", "3") as server:
        runner = make(server.url)
        with pytest.raises(RuntimeError, match="without a finish_reason or usage"):
            collect(runner, request(8))


def test_chunk_rule_counts_empty_tokens_but_not_roles_or_trailers() -> None:
    counter = ChunkCounter()
    role = {"choices": [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    special = {"choices": [{"delta": {"content": ""}, "finish_reason": None}]}
    text = {"choices": [{"delta": {"content": "x"}, "finish_reason": None}]}
    trailer = {"choices": [{"delta": {}, "finish_reason": "length"}]}
    assert [counter.delta(c).tokens for c in (role, special, text, trailer)] == [0, 1, 1, 0]
    assert counter.finish_reason == "length" and counter.usage_output is None
    completions = ChunkCounter()
    chunks = [{"text": "", "finish_reason": None}, {"text": "a", "finish_reason": None}]
    chunks += [{"text": "", "finish_reason": "length"}]  # llama-cpp-python's closing chunk
    assert [completions.delta({"choices": [c]}).tokens for c in chunks] == [1, 1, 0]
    last = {"text": "b", "finish_reason": "length"}  # vLLM: finish on the last token's chunk
    assert completions.delta({"choices": [last]}).tokens == 1
    assert completions.generated_text == "ab"


# -- server faults ----------------------------------------------------------------------------


def test_http_error_status_raises_with_the_reason() -> None:
    with ServerProcess("--fault", "http_503") as server:
        runner = make(server.url)
        with pytest.raises(RuntimeError, match="HTTP 503: synthetic fault: the server is overl"):
            collect(runner, request(4))


def test_error_event_mid_stream_raises_with_the_reason() -> None:
    with ServerProcess("--fault", "error_event", "--fault-after", "2") as server:
        runner = make(server.url)
        seen: list[Delta] = []

        async def run() -> None:
            async for delta in runner.astream(request(8)):
                seen.append(delta)

        with pytest.raises(RuntimeError, match="error event in the stream: synthetic fault: out"):
            asyncio.run(run())
    assert sum(d.tokens for d in seen) == 2


def test_connection_dropped_mid_stream_raises() -> None:
    with ServerProcess("--fault", "abort", "--fault-after", "2") as server:
        runner = make(server.url)
        with pytest.raises(RuntimeError, match=r"request to .*/v1/completions failed: .*Payload"):
            collect(runner, request(8))


def test_a_stream_cut_inside_an_event_says_so_not_error_event() -> None:
    async def cut() -> list[Delta]:
        async def body():  # the connection ends inside the second event, no blank line
            yield b'data: {"choices": [{"text": "a", "finish_reason": null}]}\n\n'
            yield b'data: {"choices": [{"te'

        return [d async for d in read_deltas(body(), ChunkCounter())]

    with pytest.raises(
        RuntimeError, match=r"""the stream was cut inside an event: '\{"choices": \[\{"te'"""
    ):
        asyncio.run(cut())
    with pytest.raises(RuntimeError, match="error event in the stream: out of memory"):
        ChunkCounter().feed(b'{"error": {"message": "out of memory"}}')


def test_the_served_models_listing_becomes_tags_and_reported_sizes() -> None:
    from runners.openai_compat import model_facts, model_identity

    # llama-server's GET /v1/models entry (tools/server: "meta" with the model's own numbers)
    entry = {
        "id": "q4.gguf", "object": "model", "created": 1733300000, "owned_by": "llamacpp",
        "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576,
                 "n_params": 134515008, "size": 98359296},
    }  # fmt: skip
    assert model_identity(entry) == {
        "server.model.object": "model",
        "server.model.created": "1733300000",
        "server.model.owned_by": "llamacpp",
        "server.model.meta.vocab_type": "2",
        "server.model.meta.n_vocab": "49152",
        "server.model.meta.n_ctx_train": "8192",
        "server.model.meta.n_embd": "576",
        "server.model.meta.n_params": "134515008",
        "server.model.meta.size": "98359296",
    }
    facts, why = model_facts(entry)
    assert facts == {  # meta.size is llama_model_size: tensor bytes, so bpw but no file size
        "model_params": 134515008.0,
        "model_bpw": pytest.approx(8 * 98359296 / 134515008),
    }
    assert "meta.size counts tensor bytes only" in why
    # vLLM's entry: a name and a context length, no size
    facts, why = model_facts({"id": "m", "root": "/models/m", "max_model_len": 4096})
    assert facts == {} and "reports no model size" in why

"""``complete``: greedy generation that stops at the end of the model's turn (quality evals),
on every runner that declares it, with the same SmolLM2-135M-Instruct weights everywhere (an
f16 GGUF for llama.cpp and its server, the bf16 checkpoint computed in f32 for transformers).

The packaged Q4_1 GGUF is not used for the answers: llama.cpp's Q4_1 kernels answer the France
question with French gibberish that never ends its turn, while the same weights in f16 answer
"The capital of France is Paris." and stop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.artifacts.cache import ArtifactCache
from harness.artifacts.gguf_file import read_table
from harness.artifacts.quantize import materialize, plan
from runners import Completion, LoadSpec, Request, TextCompletion, get_runner
from runners.hf import HFConfig, HFRunner
from runners.llama_cpp import LlamaCppConfig, LlamaCppRunner
from runners.openai_compat import OpenAICompatConfig, OpenAICompatRunner
from tests.synthetic_server import ServerProcess

QUESTION = "What is the capital of France?"
RAW = "The capital of France is"
# long enough for llama-cpp-python's server default repeat_penalty (1.1) to change the answer
LIST = "List the planets of the solar system, one per line."
SMOLLM2_CHAT_IDS = 37  # the default system prompt + the question + "<|im_start|>assistant\n"


@pytest.mark.parametrize("name", ["hf", "llama_cpp", "openai_server"])
def test_runners_declare_and_implement_completion(name: str) -> None:
    cls = get_runner(name)
    assert cls.capabilities.completion
    runner = cls(cls.Config(), LoadSpec(Path("m"), "cpu", 1))
    assert isinstance(runner, TextCompletion)


# -- the same weights on three runtimes ---------------------------------------------------------


@pytest.fixture(scope="module")
def f16_gguf(smollm_gguf: Path, model_cache: Path) -> Path:
    steps = plan("gguf", "f16", "smollm2-test", read_table(smollm_gguf))
    return Path(materialize(steps, smollm_gguf, ArtifactCache(model_cache), threads=2).path)


@pytest.fixture(scope="module")
def hf_f32(hf_checkpoint: Path) -> Iterator[HFRunner]:
    runner = HFRunner(HFConfig(), LoadSpec(hf_checkpoint, "cpu", 2, "none", "f32"))
    runner.load()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def llama_f16(f16_gguf: Path) -> Iterator[LlamaCppRunner]:
    runner = LlamaCppRunner(LlamaCppConfig(n_ctx=512), LoadSpec(f16_gguf, "cpu", 2))
    runner.load()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def server_f16(
    f16_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenAICompatRunner]:
    pytest.importorskip("uvicorn", reason="llama_cpp.server's dependencies are not installed")
    config = OpenAICompatConfig(launch="llama_cpp_python", n_ctx=512, n_threads=2)
    workdir = tmp_path_factory.mktemp("server")
    runner = OpenAICompatRunner(config, LoadSpec(f16_gguf, "cpu", 2, workdir=workdir))
    runner.load()
    yield runner
    runner.close()


@pytest.mark.slow
def test_hf_chat_answer_stops_at_end_of_turn(hf_f32: HFRunner) -> None:
    done = hf_f32.complete(QUESTION, 40, chat=True)
    assert "Paris" in done.text and done.finish == "stop" and done.output_tokens < 40
    assert "<|im_end|>" not in done.text  # decoded without special tokens
    # the stop token (<|im_end|>) is not counted: the text alone is output_tokens tokens
    assert done.output_tokens == len(hf_f32.tokenize(done.text))
    assert done.prompt_tokens == SMOLLM2_CHAT_IDS
    # complete() leaves the benchmark path as it was: exactly the forced length
    ids = tuple(hf_f32.tokenize(RAW))
    assert sum(len(c) for c in hf_f32.stream(Request(ids, 4))) == 4


@pytest.mark.slow
def test_hf_raw_prompt_cut_at_max_new_tokens(hf_f32: HFRunner) -> None:
    done = hf_f32.complete(RAW, 5, chat=False)
    assert (done.finish, done.output_tokens) == ("length", 5)
    assert done.prompt_tokens == len(hf_f32.tokenize(RAW)) == 5
    assert done.text.startswith(" Paris")
    template = hf_f32.chat_template()
    assert template is not None and "<|im_start|>" in template
    with pytest.raises(ValueError, match="max_new_tokens=0 must be >= 1"):
        hf_f32.complete(RAW, 0, chat=False)


@pytest.mark.slow
def test_hf_and_llama_cpp_render_the_same_chat_prompt(
    hf_f32: HFRunner, llama_f16: LlamaCppRunner
) -> None:
    ours, theirs = hf_f32.complete(QUESTION, 40, True), llama_f16.complete(QUESTION, 40, True)
    # the GGUF's Jinja template and the tokenizer's template are the same text, rendered alike
    assert hf_f32.chat_template() == llama_f16.chat_template()
    assert ours.prompt_tokens == theirs.prompt_tokens == SMOLLM2_CHAT_IDS
    # both stop at <|im_end|> and leave it out of the count
    assert theirs.finish == ours.finish == "stop" and "Paris" in theirs.text
    assert theirs == ours  # f16 GGUF vs f32 compute: the same short greedy answer
    raw = llama_f16.complete(RAW, 5, chat=False)
    assert raw == hf_f32.complete(RAW, 5, chat=False)
    assert (raw.finish, raw.output_tokens, raw.prompt_tokens) == ("length", 5, 5)


@pytest.mark.slow
def test_launched_server_completes_like_the_in_process_engine(
    server_f16: OpenAICompatRunner, llama_f16: LlamaCppRunner
) -> None:
    done = server_f16.complete(QUESTION, 40, chat=True)
    assert "Paris" in done.text and done.finish == "stop" and done.output_tokens < 40
    assert done.prompt_tokens == SMOLLM2_CHAT_IDS  # the server applies the GGUF's template
    raw = server_f16.complete(RAW, 5, chat=False)
    assert (raw.finish, raw.output_tokens, raw.prompt_tokens) == ("length", 5, 5)
    # pure greedy on both sides: only with repeat_penalty=1.0 sent does the server agree
    assert server_f16.complete(LIST, 80, True) == llama_f16.complete(LIST, 80, True)
    assert server_f16.chat_template() is None  # llama_cpp.server exposes no /props


# -- the client against local servers -----------------------------------------------------------


Route = Callable[[Any], tuple[int, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(None)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        self._answer(body)

    def _answer(self, body: Any) -> None:
        route = self.server.routes.get(self.path)
        status, answer = route(body) if route else (404, {"detail": "Not Found"})
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    routes: dict[str, Route]
    bodies: list[Any]


@contextmanager
def local_server(routes: dict[str, Route]) -> Iterator[tuple[str, _Server]]:
    """A stdlib HTTP server on loopback: /v1/models lists "m", ``routes`` answer the rest
    (404 elsewhere), every POST body is kept in ``bodies``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = {"/v1/models": lambda _: (200, {"data": [{"id": "m"}]})} | routes
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def client(url: str) -> OpenAICompatRunner:
    runner = OpenAICompatRunner(OpenAICompatConfig(base_url=url), LoadSpec(Path(), "cpu", 1))
    runner.load()
    return runner


def test_http_500_raises_one_line_naming_url_and_status() -> None:
    error = {"error": {"message": "model crashed\n  in layer 3"}}
    with local_server({"/v1/chat/completions": lambda _: (500, error)}) as (url, server):
        runner = client(url)
        with pytest.raises(RuntimeError) as failed:
            runner.complete(QUESTION, 16, chat=True)
        assert str(failed.value) == (
            f"{url}/v1/chat/completions returned HTTP 500: model crashed in layer 3"
        )
        assert runner.chat_template() is None  # /props: 404
    (sent,) = server.bodies
    assert sent == {
        "model": "m",
        "max_tokens": 16,
        "stream": False,
        "temperature": 0.0,
        "top_p": 1.0,
        "messages": [{"role": "user", "content": QUESTION}],
    }  # no ignore_eos, no min_tokens: the server may stop at the end of the turn


def test_answer_without_usage_is_counted_by_the_tokenize_endpoint() -> None:
    routes: dict[str, Route] = {
        "/v1/completions": lambda _: (
            200,
            {"choices": [{"text": " a b", "finish_reason": "stop"}]},
        ),
        "/v1/chat/completions": lambda _: (200, {"choices": [{"message": {"content": "a"}}]}),
        # vLLM's body; the ids are a BOS and one per word
        "/tokenize": lambda body: (200, {"tokens": [1] * (1 + len(body["prompt"].split()))}),
        "/props": lambda _: (200, {"chat_template": "{{ messages }}", "build_info": "b1"}),
    }
    with local_server(routes) as (url, _):
        runner = client(url)
        # the text's ids less the BOS added to any text; the raw prompt's own ids
        assert runner.complete("x y z", 8, chat=False) == Completion(" a b", 4, 2, "stop")
        assert runner.chat_template() == "{{ messages }}"  # llama-server's GET /props
        with pytest.raises(RuntimeError, match="sent no usage, and a chat prompt cannot be"):
            runner.complete("x y z", 8, chat=True)  # the server's template: unknown here


def test_synthetic_server_usage_and_finish() -> None:
    with ServerProcess("--ttft-s", "0", "--itl-s", "0") as server:
        runner = client(server.url)
        raw = runner.complete("one two three", 4, chat=False)
        assert raw == Completion(" tok tok tok tok", 3, 4, "length")
        assert runner.complete("one two", 2, chat=True) == Completion(" tok tok", 2, 2, "length")
        runner.close()

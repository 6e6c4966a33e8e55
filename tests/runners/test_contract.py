"""One contract, every adapter that can run here, driven by the harness's own load generator.

Each adapter loads the same SmolLM2-135M (GGUF for llama.cpp and its server, the converted
bf16 checkpoint for transformers) and must produce: real token counts from the engine or the
server, exactly the forced output length, monotonic timestamps, versions and generation
settings, and a clean shutdown that leaves no child process behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.config.schema import LoadMode, WorkloadConfig
from harness.measure.loadgen import build_requests, pattern_for, run_repetition
from harness.metrics.equivalence import RUNNER_KEYS
from harness.results.events import CountSource, RequestRecord
from runners import LoadSpec, Runner, get_runner

PROMPTS = [
    "Explain why the sky is blue in two sentences.",
    "What is the difference between a list and a tuple in Python?",
    "Write a haiku about a lighthouse.",
    "List three prime numbers.",
]
NEW_TOKENS = 12


@dataclass(frozen=True)
class Adapter:
    runtime: str
    method: str
    precision: str
    config: dict[str, object]
    model: str  # fixture name of the model path
    concurrency: int = 1
    exact_source: CountSource = CountSource.engine


ADAPTERS = {
    "llama_cpp": Adapter("llama_cpp", "none", "native", {"n_ctx": 512}, "smollm_gguf"),
    "hf-f32": Adapter("hf", "none", "f32", {}, "hf_checkpoint"),
    "hf-bf16": Adapter("hf", "none", "bf16", {}, "hf_checkpoint"),
    "hf-torchao-int8": Adapter("hf", "torchao", "int8", {}, "hf_checkpoint"),
    "openai_server-llama_cpp_python": Adapter(
        "openai_server",
        "none",
        "native",
        {"launch": "llama_cpp_python", "n_ctx": 512},
        "smollm_gguf",
        concurrency=4,
        exact_source=CountSource.finish_length,  # llama_cpp.server streams no usage
    ),
}


@dataclass
class Ran:
    runner: Runner
    records: list[RequestRecord]
    prompt_lengths: list[int]
    versions: dict[str, str]
    settings: dict[str, str]
    children_alive: list[psutil.Process]


def workload(concurrency: int) -> WorkloadConfig:
    return WorkloadConfig(
        name="contract",
        prompts=PROMPTS,
        max_new_tokens=NEW_TOKENS,
        mode=LoadMode.closed_loop,
        concurrency=concurrency,
        requests=8,
        min_duration_s=0.0,
    )


@pytest.fixture(scope="module", params=list(ADAPTERS), ids=list(ADAPTERS))
def ran(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Adapter, Ran]]:
    adapter = ADAPTERS[request.param]
    model: Path = request.getfixturevalue(adapter.model)
    cls = get_runner(adapter.runtime)
    workdir = tmp_path_factory.mktemp(request.param)
    spec = LoadSpec(model, "cpu", 2, adapter.method, adapter.precision, workdir)
    runner = cls(cls.Config(**adapter.config), spec)  # type: ignore[arg-type]
    try:
        runner.load()
        versions, settings = runner.versions(), runner.generation_settings()
        reqs = build_requests(runner, PROMPTS, NEW_TOKENS, None)
        pattern = pattern_for(workload(adapter.concurrency), cls.capabilities.max_concurrency)
        _, records = run_repetition(runner, reqs, pattern, "measure", 0)
    finally:
        runner.close()
    alive = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
    # the runtime's own count: its ids, or (a server sent text) what the server reported
    lengths = [len(r.prompt_ids) if r.prompt_tokens is None else r.prompt_tokens for r in reqs]
    yield adapter, Ran(runner, records, lengths, versions, settings, alive)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


Check = Callable[[Adapter, Ran], None]


def test_every_request_produced_exactly_the_forced_length(ran: tuple[Adapter, Ran]) -> None:
    adapter, r = ran
    assert len(r.records) == 8
    for rec in r.records:
        assert rec.ok, rec.error
        assert rec.output_tokens == NEW_TOKENS
        assert rec.output_count_source == adapter.exact_source.value


def test_token_counts_are_real(ran: tuple[Adapter, Ran]) -> None:
    adapter, r = ran
    for rec in r.records:
        # prompt lengths come from the runtime's own tokenizer (or the server's usage)
        assert rec.prompt_tokens == r.prompt_lengths[rec.prompt_index % len(PROMPTS)]
        assert rec.prompt_tokens >= 5
        counted = sum(rec.chunk_tokens)
        if adapter.exact_source is CountSource.engine:
            assert counted == NEW_TOKENS  # every id was yielded and stamped


def test_timestamps_are_monotonic(ran: tuple[Adapter, Ran]) -> None:
    _, r = ran
    for rec in r.records:
        assert rec.t_scheduled_ns <= rec.t_send_ns
        assert rec.chunk_ns, "no chunk was stamped"
        assert rec.t_send_ns < rec.chunk_ns[0]
        assert list(rec.chunk_ns) == sorted(rec.chunk_ns)
        assert rec.t_first_content_ns is not None and rec.t_first_content_ns >= rec.t_send_ns


def test_concurrency_really_overlaps_requests(ran: tuple[Adapter, Ran]) -> None:
    adapter, r = ran
    spans = sorted((rec.t_send_ns, rec.chunk_ns[-1]) for rec in r.records)
    overlapping = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    if adapter.concurrency > 1:
        assert overlapping >= 3  # in flight together (a server may still serialise them)
    else:
        assert overlapping == 0


def test_versions_and_settings_are_reported(ran: tuple[Adapter, Ran]) -> None:
    _, r = ran
    assert r.versions and all(isinstance(v, str) and v for v in r.versions.values())
    for key in RUNNER_KEYS:
        assert r.settings.get(key), f"generation setting {key} missing"


def test_shutdown_leaves_no_child_process(ran: tuple[Adapter, Ran]) -> None:
    _, r = ran
    assert r.children_alive == []
    r.runner.close()  # idempotent

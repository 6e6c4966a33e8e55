"""Load modes driven for real: the FakeRunner in-process and the synthetic server over HTTP."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config.schema import LoadMode, WorkloadConfig
from harness.measure.drivers import inter_arrivals
from harness.measure.loadgen import build_requests, pattern_for, run_repetition
from harness.measure.session import Session, engine_deltas, search_rate
from harness.metrics.derive import send_lag_s, ttft_s
from harness.results.events import Phase, read_log
from runners import LoadSpec, Request
from runners.fake import FakeConfig, FakeRunner
from runners.openai_compat import OpenAICompatConfig, OpenAICompatRunner
from tests.synthetic_server import ServerProcess

PROMPTS = ["one two three", "four five six seven"]


def workload(**kw) -> WorkloadConfig:
    base = {
        "name": "t",
        "prompts": PROMPTS,
        "max_new_tokens": 4,
        "min_duration_s": 0.0,
        "warmup_repetitions": 0,
        "repetitions": 1,
    }
    return WorkloadConfig(**{**base, **kw})


def fake(**kw) -> FakeRunner:
    runner = FakeRunner(FakeConfig(ttft_s=0.002, itl_s=0.001, **kw), LoadSpec(Path(), "cpu", 1))
    runner.load()
    return runner


def drive(runner, w: WorkloadConfig):
    reqs = build_requests(runner, w.prompts, w.max_new_tokens, w.input_tokens)
    p = pattern_for(w, runner.capabilities.max_concurrency)
    return run_repetition(runner, reqs, p, Phase.measure.value, 0)


def test_closed_loop_sends_each_request_when_the_last_finished() -> None:
    info, records = drive(fake(), workload(requests=5, warmup_requests=2))
    assert [r.index for r in records] == [0, 1, 2, 3, 4]
    assert [r.prompt_index % 2 for r in records] == [0, 1, 0, 1, 0]
    assert [r.phase for r in records] == ["warmup"] * 2 + ["measure"] * 3
    assert all(r.output_tokens == 4 and r.output_count_source == "engine" for r in records)
    for prev, nxt in itertools.pairwise(records):
        assert nxt.t_scheduled_ns >= prev.chunk_ns[-1]
    assert info.mode == "closed_loop" and info.requests == 5
    assert info.params == {"seed": 0.0, "concurrency": 1.0}


def test_a_repetition_runs_at_least_the_minimum_duration() -> None:
    info, records = drive(fake(), workload(requests=1, min_duration_s=0.1))
    assert (info.t_end_ns - info.t_start_ns) / 1e9 >= 0.1
    assert len(records) > 1  # kept cycling the prompts


def test_input_tokens_tiles_prompts_to_an_exact_length() -> None:
    reqs = build_requests(fake(), PROMPTS, 4, input_tokens=10)
    assert [len(r.prompt_ids) for r in reqs] == [10, 10]
    assert reqs[0].prompt_ids[:3] == reqs[0].prompt_ids[3:6]


def test_open_loop_on_a_single_stream_engine_queues_instead_of_lagging() -> None:
    # 1000 req/s against requests that take ~5 ms: arrivals pile up behind the engine
    w = workload(mode=LoadMode.poisson, rate=1000.0, requests=20)
    info, records = drive(fake(), w)
    assert info.params["rate_req_s"] == 1000.0 and info.params["max_concurrency"] == 1.0
    assert sum(r.queue_ns > 0 for r in records) >= 15
    assert max(send_lag_s(r) for r in records) < 0.005
    scheduled = [r.t_scheduled_ns for r in records]
    assert scheduled == sorted(scheduled)


def test_offline_batches_are_not_streamed() -> None:
    _info, records = drive(fake(), workload(mode=LoadMode.offline, requests=3))
    assert len(records) == 3 and {r.t_send_ns for r in records} == {records[0].t_send_ns}
    assert all(not r.streamed and r.chunk_tokens == (4,) for r in records)
    assert ttft_s(records[0]) is None


def test_gamma_arrivals_have_the_configured_mean_and_shape() -> None:
    for shape in (1.0, 0.25):
        gaps = inter_arrivals(50.0, shape, random.Random(1))
        xs = [next(gaps) for _ in range(20000)]
        assert statistics.fmean(xs) == pytest.approx(1 / 50, rel=0.05)
        cv = statistics.stdev(xs) / statistics.fmean(xs)
        assert cv == pytest.approx(1 / shape**0.5, rel=0.08)  # gamma CV = 1/sqrt(k)


def test_search_rate_finds_the_knee() -> None:
    tried: list[float] = []

    def passes(rate: float) -> bool:
        tried.append(rate)
        return rate <= 37.0

    assert (
        search_rate(passes, 10.0, 1000.0, bisections=4) == 36.25
    )  # 20 | 40, then 30, 35, 37.5 (miss), 36.25
    assert tried[:4] == [10.0, 20.0, 40.0, 30.0]
    assert search_rate(lambda r: r <= 1.0, 10.0, 1000.0, 2) == 0.9375  # 0.625 | 1.25
    assert search_rate(lambda r: False, 10.0, 1000.0, 2) is None
    assert search_rate(lambda r: True, 10.0, 50.0, 2) == 40.0


def test_engine_counters_are_differenced_and_gauges_kept() -> None:
    before = {"decode_tokens": 10.0, "decode_s": 1.0, "alloc_peak_bytes": 5.0}
    after = {"decode_tokens": 110.0, "decode_s": 2.0, "alloc_peak_bytes": 9.0}
    d = engine_deltas(before, after)
    assert d == {
        "engine_decode_tokens": 100.0,
        "engine_decode_s": 1.0,
        "engine_alloc_peak_bytes": 9.0,
        "engine_decode_tok_s": 100.0,
    }


def test_session_writes_one_log_per_repetition(tmp_path: Path) -> None:
    w = workload(warmup_repetitions=1, repetitions=2, requests=3, warmup_requests=1)
    out = Session(fake(), w, tmp_path).run()
    infos, records = read_log(tmp_path)
    assert [(i.phase, i.repetition) for i in infos] == [
        ("warmup", 0),
        ("measure", 0),
        ("measure", 1),
    ]
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "measure-0.jsonl",
        "measure-1.jsonl",
        "repetitions.json",
        "warmup-0.jsonl",
    ]
    assert records == out.records
    assert [r.phase for r in records if r.repetition == 1] == ["warmup", "measure", "measure"]
    assert all(r.phase == "warmup" for r in records[:3])


def test_rate_sweep_probes_are_kept_apart(tmp_path: Path) -> None:
    w = workload(
        mode=LoadMode.rate_sweep,
        rate=50.0,
        sweep_max_rate=200.0,
        sweep_bisections=1,
        requests=6,
        slo={"e2e_s": 0.05},
    )
    out = Session(fake(), w, tmp_path).run()
    assert out.probes and out.metrics["max_rate_at_slo_req_s"] >= 50.0
    infos, _ = read_log(tmp_path)
    assert {i.phase for i in infos} == {"probe", "measure"}
    measured = [i for i in infos if i.phase == "measure"]
    assert measured[0].params["rate_req_s"] == out.metrics["max_rate_at_slo_req_s"]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with ServerProcess("--ttft-s", "0.01", "--itl-s", "0.002") as server:
        yield server.url


def client(url: str) -> OpenAICompatRunner:
    runner = OpenAICompatRunner(OpenAICompatConfig(base_url=url), LoadSpec(Path(), "cpu", 1))
    runner.load()
    return runner


def test_closed_loop_concurrency_over_http(server_url: str) -> None:
    runner = client(server_url)
    try:
        info, records = drive(runner, workload(concurrency=4, requests=16))
    finally:
        runner.close()
    assert len(records) == 16 and all(r.ok for r in records)
    assert {r.output_count_source for r in records} == {"server_usage"}
    assert all(r.output_tokens == 4 for r in records)
    # four streams in flight: the run takes about a quarter of the serial time
    serial = sum(r.chunk_ns[-1] - r.t_send_ns for r in records)
    assert info.t_end_ns - info.t_start_ns < serial / 2


def test_poisson_with_a_cap_over_http(server_url: str) -> None:
    runner = client(server_url)
    try:
        info, records = drive(
            runner, workload(mode=LoadMode.poisson, rate=400.0, requests=40, max_concurrency=2)
        )
    finally:
        runner.close()
    assert info.params["max_concurrency"] == 2.0
    assert all(r.ok for r in records) and sum(r.queue_ns > 0 for r in records) > 10
    in_flight = max(
        sum(1 for o in records if o.t_send_ns <= r.t_send_ns < o.chunk_ns[-1]) for r in records
    )
    assert in_flight <= 2


def test_offline_over_http_counts_from_server_usage(server_url: str) -> None:
    runner = client(server_url)
    try:
        _info, records = drive(runner, workload(mode=LoadMode.offline, requests=3))
    finally:
        runner.close()
    assert [r.output_tokens for r in records] == [4, 4, 4]
    assert {r.output_count_source for r in records} == {"server_usage"}


def test_a_repetition_of_failures_stops_early_and_says_so(tmp_path: Path) -> None:
    from harness.measure.loadgen import MAX_FAILURES
    from runners.fake import Fault

    runner = fake(fault=Fault.error)
    info, records = drive(runner, workload(min_duration_s=30.0))  # would hammer for 30 s
    assert len(records) == MAX_FAILURES and not any(r.ok for r in records)
    assert info.client == {"stopped_early": float(MAX_FAILURES)}
    w = workload(min_duration_s=30.0, warmup_repetitions=1, repetitions=3)
    out = Session(runner, w, tmp_path).run()
    assert [i.phase for i in out.infos] == ["warmup"]  # nothing measured after it
    assert out.stopped == (
        f"warmup-0 stopped after {MAX_FAILURES} failed requests "
        "(last: RuntimeError: injected failure in stream()); no later repetition was run"
    )


@pytest.mark.parametrize("mode", ["closed_loop", "poisson"])
def test_a_server_answering_only_errors_is_not_hammered(mode: str) -> None:
    from harness.measure.loadgen import MAX_FAILURES

    with ServerProcess("--fault", "http_503", "--fault-after", "0") as server:
        runner = client(server.url)
        try:
            w = workload(mode=LoadMode(mode), rate=200.0, concurrency=2, min_duration_s=30.0)
            with pytest.raises(RuntimeError, match="HTTP 503: synthetic fault"):
                drive(runner, w)  # the server's count of the prompt is asked for first
            reqs = [Request((), 4, p) for p in PROMPTS]
            pattern = pattern_for(w, runner.capabilities.max_concurrency)
            info, records = run_repetition(runner, reqs, pattern, Phase.measure.value, 0)
        finally:
            runner.close()
    # in flight when the limit was reached: at most one more per stream (or a few arrivals)
    assert MAX_FAILURES <= len(records) < MAX_FAILURES + 4
    assert "HTTP 503" in (records[0].error or "") and info.client["stopped_early"] >= 8

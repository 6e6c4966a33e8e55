"""The four measurement figures of docs/metrics.md, printed against their targets:

1. fidelity: harness decode tok/s ÷ llama.cpp's own perf counters, same repetitions (CPU cell)
2. accuracy: TTFT and ITL recovered from a runner with injected delays
3. overhead: harness bookkeeping per streamed token ÷ the CPU cell's measured ITL
4. load generator: Poisson against the synthetic streaming server on loopback, server and
   client pinned to one core each: the highest rate whose send-lag p99 stays under 5 ms

    .venv/bin/python benchmarks/bench_measurement.py [--skip-fidelity] [--rates 500,1000]

Fidelity needs llama-cpp-python and builds (or reuses) the q4_k_m SmolLM2 file in the artifact
cache (~/.cache/harness, or $HARNESS_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.config.schema import LoadMode, WorkloadConfig  # noqa: E402
from harness.measure.loadgen import build_requests, pattern_for, run_repetition  # noqa: E402
from harness.measure.session import Session  # noqa: E402
from harness.metrics.derive import derive, send_lag_s  # noqa: E402
from harness.metrics.stats import percentile  # noqa: E402
from runners import Capabilities, LoadSpec, Request  # noqa: E402
from runners.fake import FakeConfig, FakeRunner  # noqa: E402

CACHE = Path(os.environ.get("HARNESS_CACHE_DIR", "~/.cache/harness")).expanduser()


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def cpu_cell_file(precision: str = "q4_k_m") -> Path:
    """The cell's GGUF from the artifact cache, built the way a sweep builds it."""
    from hydra import compose, initialize_config_dir

    from harness.artifacts.cache import ArtifactCache
    from harness.artifacts.quantize import materialize, plan
    from harness.artifacts.source import source_of
    from harness.config.convert import to_typed
    from harness.config.register import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = to_typed(compose("config", overrides=[f"precision={precision}"]))
    cfg.run.cache_dir = str(CACHE)
    source = source_of(cfg)
    steps = plan(cfg.method.name, precision, source.sha256, source.table)
    return Path(materialize(steps, source.path, ArtifactCache(CACHE), os.cpu_count() or 1).path)


def fidelity() -> float:
    """Returns the measured ITL p50 of the cell (seconds), for the overhead figure."""
    from hydra import compose, initialize_config_dir

    from harness.config.register import register_configs
    from harness.measure.assemble import Assembled, engine_check
    from runners.llama_cpp import LlamaCppConfig, LlamaCppRunner

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        wl = compose("config").workload
    workload = WorkloadConfig(
        name="short_chat",
        prompts=list(wl.prompts),
        max_new_tokens=wl.max_new_tokens,
        warmup_repetitions=1,
        repetitions=5,
        min_duration_s=0.0,
    )
    threads = len(os.sched_getaffinity(0))
    runner = LlamaCppRunner(LlamaCppConfig(), LoadSpec(cpu_cell_file(), "cpu", threads))
    runner.load()
    with tempfile.TemporaryDirectory() as d:
        meas = Session(runner, workload, Path(d)).run()
    runner.close()
    derived = derive(meas.records)
    out = Assembled(per_rep=dict(derived.per_rep))
    engine_check(meas, out)
    ratios = out.per_rep["decode_fidelity_ratio"]
    print(f"1. fidelity: llama.cpp q4_k_m, 8 prompts x 64 tokens, 5 repetitions, {threads} threads")
    for i, (h, e, r) in enumerate(
        zip(
            derived.per_rep["decode_tok_s"],
            meas.per_rep["engine_decode_tok_s"],
            ratios,
            strict=True,
        )
    ):
        print(
            f"   rep {i}: harness {h:7.2f} tok/s  llama_perf_context {e:7.2f} tok/s  ratio {r:.4f}"
        )
    ok = all(0.97 <= r <= 1.03 for r in ratios)
    print(
        f"   ratio range {min(ratios):.4f}..{max(ratios):.4f}  target [0.97, 1.03]: {verdict(ok)}"
    )
    return derived.metrics["itl_p50_s"]


def accuracy() -> None:
    print("2. accuracy: FakeRunner with injected delays, 4 x 32 requests of 32 tokens")
    for ttft, itl, chunk in ((0.020, 0.005, 1), (0.050, 0.010, 4), (0.005, 0.001, 1)):
        runner = FakeRunner(
            FakeConfig(ttft_s=ttft, itl_s=itl, chunk_tokens=chunk), LoadSpec(Path(), "cpu", 1)
        )
        w = WorkloadConfig(
            name="acc",
            prompts=["a b c"],
            max_new_tokens=32,
            requests=32,
            warmup_repetitions=1,
            repetitions=3,
            min_duration_s=0.0,
        )
        with tempfile.TemporaryDirectory() as d:
            m = derive(Session(runner, w, Path(d)).run().records).metrics
        for name, got, want in (
            ("TTFT p50", m["ttft_p50_s"], ttft),
            ("ITL p50 (per token)", m["itl_p50_s"], itl),
        ):
            err = got - want
            ok = abs(err) <= max(0.02 * want, 0.0002)
            print(
                f"   injected ttft {ttft * 1e3:g} ms itl {itl * 1e3:g} ms chunk {chunk}: "
                f"{name} {got * 1e3:.4f} ms, error {err * 1e3:+.4f} ms "
                f"({err / want:+.2%})  target 2 % or 0.2 ms: {verdict(ok)}"
            )


class NullRunner:
    """Produces tokens instantly: what remains is the harness's own per-token cost."""

    capabilities: ClassVar[Capabilities] = FakeRunner.capabilities

    def tokenize(self, text: str) -> list[int]:
        return [1] * len(text.split())

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        for _ in range(request.max_new_tokens):
            yield (0,)

    def counters(self) -> dict[str, float]:
        return {}


def overhead(itl_s: float | None, tokens: int = 200_000) -> None:
    runner = NullRunner()
    w = WorkloadConfig(
        name="null",
        prompts=["a b c"],
        max_new_tokens=tokens,
        warmup_repetitions=0,
        repetitions=1,
        min_duration_s=0.0,
    )
    reqs = build_requests(runner, w.prompts, tokens, None)  # type: ignore[arg-type]
    pattern = pattern_for(w, 1)
    t0 = time.perf_counter_ns()
    run_repetition(runner, reqs, pattern, "measure", 0)  # type: ignore[arg-type]
    per_token = (time.perf_counter_ns() - t0) / tokens
    print(f"3. overhead: harness loop per streamed token {per_token:.0f} ns")
    if itl_s is None:
        print("   (no CPU-cell ITL measured: run without --skip-fidelity for the ratio)")
        return
    share = per_token / (itl_s * 1e9)
    print(
        f"   vs CPU-cell ITL p50 {itl_s * 1e3:.2f} ms: {share:.4%}  target < 1 %: "
        f"{verdict(share < 0.01)}"
    )


def loadgen(rates: Sequence[float], seconds: float = 4.0) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests/ helpers
    from runners.openai_compat import OpenAICompatConfig, OpenAICompatRunner
    from tests.synthetic_server import ServerProcess

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[0], cpus[-1]
    print(
        f"4. load generator: Poisson, 4-token streams, server on cpu {server_cpu}, "
        f"client on cpu {client_cpu}, {seconds:g} s per rate"
    )
    best = None
    with ServerProcess("--ttft-s", "0.002", "--itl-s", "0.0005", cpu=server_cpu) as server:
        os.sched_setaffinity(0, {client_cpu})
        runner = OpenAICompatRunner(
            OpenAICompatConfig(base_url=server.url), LoadSpec(Path(), "cpu", 1)
        )
        runner.load()
        try:
            for rate in rates:
                w = WorkloadConfig(
                    name="lg",
                    prompts=["one two three"],
                    max_new_tokens=4,
                    mode=LoadMode.poisson,
                    rate=rate,
                    requests=int(rate * seconds),
                    min_duration_s=0.0,
                )
                reqs = build_requests(runner, w.prompts, 4, None)
                info, records = run_repetition(runner, reqs, pattern_for(w, None), "measure", 0)
                wall = (max(r.t_send_ns for r in records) - info.t_start_ns) / 1e9
                lags = [send_lag_s(r) for r in records]
                p99 = percentile(lags, 99) or 0.0
                failed = sum(not r.ok for r in records)
                ok = p99 < 0.005 and failed == 0
                if ok:
                    best = max(best or 0.0, len(records) / wall)
                print(
                    f"   target {rate:6.0f} req/s: sent {len(records) / wall:7.1f} req/s, "
                    f"send-lag p99 {p99 * 1e3:6.3f} ms, failed {failed}: "
                    f"{'ok' if ok else 'over'}"
                )
        finally:
            runner.close()
            os.sched_setaffinity(0, set(cpus))
    met = best is not None and best >= 500
    print(
        f"   highest sustained rate with send-lag p99 < 5 ms: "
        f"{best or 0:.0f} req/s  target >= 500: {verdict(met)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-fidelity", action="store_true")
    ap.add_argument("--rates", default="250,500,750,1000,1500,2000")
    args = ap.parse_args()
    itl = None if args.skip_fidelity else fidelity()
    accuracy()
    overhead(itl)
    loadgen([float(r) for r in args.rates.split(",")])


if __name__ == "__main__":
    main()

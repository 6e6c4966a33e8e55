"""What the harness itself costs, printed: the clock, the per-token measurement loop, and the
wall time of a FakeRunner sweep (subprocess per cell, MLflow logging) and of its resume.

    .venv/bin/python benchmarks/bench_harness_overhead.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.clock import now_ns  # noqa: E402
from harness.config import WorkloadConfig  # noqa: E402
from harness.measure import run_workload  # noqa: E402
from runners import Request  # noqa: E402


class NullRunner:
    """Produces tokens instantly: what remains is the harness's own per-token cost."""

    def tokenize(self, text: str) -> list[int]:
        return [1] * len(text.split())

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        for _ in range(request.max_new_tokens):
            yield (0,)


def bench_clock(n: int = 1_000_000) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        now_ns()
    return (time.perf_counter_ns() - t0) / n


def bench_loop(tokens: int = 200_000) -> float:
    workload = WorkloadConfig(
        name="null", prompts=["a b c"], max_new_tokens=tokens, warmup_repetitions=0, repetitions=1
    )
    t0 = time.perf_counter_ns()
    run_workload(NullRunner(), workload)  # type: ignore[arg-type]
    return (time.perf_counter_ns() - t0) / tokens


def bench_sweep() -> tuple[float, float]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import harness_argv, write_tiny_gguf

    with tempfile.TemporaryDirectory() as d:
        tiny = write_tiny_gguf(Path(d) / "tiny.gguf")
        argv = harness_argv(Path(d) / "cache", "+sweep=fake_matrix", f"model.source.path={tiny}")
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=d, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


if __name__ == "__main__":
    print(f"clock read (perf_counter_ns):        {bench_clock():8.1f} ns")
    print(f"measurement loop per token:          {bench_loop():8.1f} ns")
    first, second = bench_sweep()
    print(f"4-cell FakeRunner sweep, first run:  {first:8.2f} s  ({first / 4:.2f} s per cell)")
    print(f"same sweep again (all cells cached): {second:8.2f} s")

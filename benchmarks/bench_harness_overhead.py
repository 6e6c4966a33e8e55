"""What the harness itself costs, printed: the clock, and the wall time of a FakeRunner sweep
(subprocess per cell, MLflow logging) and of its resume. The per-token loop cost is figure 3
of bench_measurement.py.

    .venv/bin/python benchmarks/bench_harness_overhead.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.results.clock import now_ns  # noqa: E402


def bench_clock(n: int = 1_000_000) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        now_ns()
    return (time.perf_counter_ns() - t0) / n


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
    first, second = bench_sweep()
    print(f"4-cell FakeRunner sweep, first run:  {first:8.2f} s  ({first / 4:.2f} s per cell)")
    print(f"same sweep again (all cells cached): {second:8.2f} s")

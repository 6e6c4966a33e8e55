"""Latency samples and p95 confidence intervals, from a cell's raw event log.

The p95 itself is the logged metric (pooled over every measured request of every repetition,
type-7, docs/metrics.md); recomputed here from the same events it must be equal. Its 95 % CI is
a **request-level (cluster) percentile bootstrap**: resample the measured requests with
replacement (2,000 resamples, ``numpy.random.default_rng(0)``), pool the chosen requests'
samples, take the type-7 p95 of each resample, and report the 2.5th and 97.5th percentiles.
Requests, not tokens, are resampled because a request's inter-token gaps are correlated (one
slow request slows all of its tokens). The CI is given only where the p95 itself is (enough
samples for its maximum to bound it); otherwise both are absent with the logged reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.metrics.derive import e2e_s, itl_token_s, ttft_s
from harness.metrics.stats import min_samples_for
from harness.results.events import Phase, RequestRecord, read_log

RESAMPLES = 2000
SERIES: dict[str, Callable[[RequestRecord], list[float]]] = {
    "ttft_s": lambda r: [x] if (x := ttft_s(r)) is not None else [],
    "itl_s": itl_token_s,
    "e2e_s": lambda r: [x] if (x := e2e_s(r)) is not None else [],
}


@dataclass(frozen=True)
class SeriesStats:
    samples: list[float]  # pooled, in request order
    p95: float | None
    ci95: tuple[float, float] | None


def measured(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.phase == Phase.measure and r.ok]


def per_request(records: Sequence[RequestRecord], series: str) -> list[list[float]]:
    return [SERIES[series](r) for r in measured(records)]


def p95_with_ci(groups: Sequence[Sequence[float]], seed: int = 0) -> SeriesStats:
    samples = [x for g in groups for x in g]
    if len(samples) < min_samples_for(95):
        return SeriesStats(samples, None, None)
    p95 = float(np.percentile(samples, 95))
    sizes = [len(g) for g in groups if g]
    if len(sizes) < 2:
        return SeriesStats(samples, p95, None)
    rng = np.random.default_rng(seed)
    nonempty = [np.asarray(g, dtype=float) for g in groups if g]
    stats = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        picks = rng.integers(0, len(nonempty), size=len(nonempty))
        stats[i] = np.percentile(np.concatenate([nonempty[j] for j in picks]), 95)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return SeriesStats(samples, p95, (float(lo), float(hi)))


def from_events(cell_dir: Path) -> dict[str, SeriesStats]:
    """Every series' samples, p95 and CI from ``cell_dir/events``."""
    _, records = read_log(cell_dir)
    return {name: p95_with_ci(per_request(records, name)) for name in SERIES}

"""Pure statistics with stated conventions (see docs/metrics.md).

Percentiles: linear interpolation between order statistics (Hyndman-Fan type 7, numpy's
default). Standard deviation: sample (n - 1). Undefined statistics are ``None``, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """Type-7 percentile: h = (n - 1) * q / 100, interpolate x[floor(h)] .. x[floor(h) + 1]."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} outside [0, 100]")
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def sample_std(values: Sequence[float]) -> float | None:
    """s = sqrt(sum((x - mean)^2) / (n - 1)); undefined below two values."""
    if len(values) < 2:
        return None
    m = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((x - m) ** 2 for x in values) / (len(values) - 1))


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    mean: float | None
    std: float | None
    cv: float | None  # std / mean
    min: float | None
    max: float | None


def summarize(values: Sequence[float]) -> Summary:
    m = mean(values)
    s = sample_std(values)
    cv = s / m if s is not None and m else None
    return Summary(
        n=len(values),
        mean=m,
        std=s,
        cv=cv,
        min=min(values) if values else None,
        max=max(values) if values else None,
    )

"""Pure statistics with stated conventions (see docs/metrics.md).

- Percentiles: linear interpolation between order statistics (Hyndman-Fan type 7, numpy's
  default); the median is the type-7 p50.
- Standard deviation: sample, s = sqrt(sum((x - mean)^2) / (n - 1)).
- CV: s / mean (sample std, so ddof = 1).
- MAD: median(|x - median|), unscaled (multiply by 1.4826 to estimate sigma for normal data).
- Confidence interval of the mean: Student t, mean ± t(0.975, n - 1) · s / sqrt(n).

Undefined statistics are ``None``, never 0. scipy is imported only inside the functions that
need it, so importing this module stays cheap.
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


def median(values: Sequence[float]) -> float | None:
    """Type-7 p50 (the middle value, or the mean of the two middle values)."""
    return percentile(values, 50)


def mad(values: Sequence[float]) -> float | None:
    """Unscaled median absolute deviation: median(|x - median(x)|).

    Not multiplied by 1.4826; scale it yourself to estimate sigma for normal data.
    """
    m = median(values)
    if m is None:
        return None
    return median([abs(x - m) for x in values])


def t_quantile(p: float, df: int) -> float:
    """Quantile function of Student's t distribution with ``df`` degrees of freedom."""
    if not 0 < p < 1:
        raise ValueError(f"t_quantile p={p} outside (0, 1)")
    if df < 1:
        raise ValueError(f"t_quantile df={df} must be at least 1")
    from scipy import stats as sps

    return float(sps.t.ppf(p, df))


def t_ci95(values: Sequence[float]) -> tuple[float, float] | None:
    """95 % Student-t interval of the mean: mean ± t(0.975, n - 1) · s / sqrt(n).

    Undefined (``None``) below two values.
    """
    m, s = mean(values), sample_std(values)
    if m is None or s is None:
        return None
    half = t_quantile(0.975, len(values) - 1) * s / math.sqrt(len(values))
    return (m - half, m + half)


def min_samples_for(q: float, confidence: float = 0.95) -> int:
    """Fewest samples whose maximum bounds the q-th percentile with the given confidence.

    The sample maximum of n values lies above the q-th percentile with probability
    1 - (q/100)^n, so n = ceil(ln(1 - confidence) / ln(q / 100)): 5 for p50, 29 for p90,
    59 for p95 and 299 for p99 at 95 % confidence.
    """
    if not 0 < q < 100:
        raise ValueError(f"min_samples_for q={q} must lie strictly between 0 and 100")
    if not 0 < confidence < 1:
        raise ValueError(f"min_samples_for confidence={confidence} outside (0, 1)")
    p = q / 100
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(p)))
    # Guard against rounding when the quotient is an integer: check the definition directly.
    if n > 1 and 1 - p ** (n - 1) >= confidence:
        n -= 1
    return n


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    mean: float | None
    std: float | None  # sample std, n - 1
    cv: float | None  # std / mean
    min: float | None
    max: float | None
    median: float | None = None  # type-7 p50
    mad: float | None = None  # unscaled median absolute deviation
    ci95_lo: float | None = None  # Student-t 95 % interval of the mean
    ci95_hi: float | None = None


def summarize(values: Sequence[float]) -> Summary:
    m = mean(values)
    s = sample_std(values)
    cv = s / m if s is not None and m else None
    ci = t_ci95(values)
    return Summary(
        n=len(values),
        mean=m,
        std=s,
        cv=cv,
        min=min(values) if values else None,
        max=max(values) if values else None,
        median=median(values),
        mad=mad(values),
        ci95_lo=ci[0] if ci else None,
        ci95_hi=ci[1] if ci else None,
    )


def instability(
    values: Sequence[float], cv_limit: float = 0.10, outlier_limit: float = 0.50
) -> list[str]:
    """Readable reasons to distrust repeated measurements (pyperf's rules); [] when stable.

    Flags CV = s / |mean| >= ``cv_limit`` and every value (repetitions numbered from 1)
    with |x - mean| >= ``outlier_limit`` · |mean|. Fewer than two values give []. A zero mean
    with differing values is flagged, since the relative spread is then undefined.
    """
    m, s = mean(values), sample_std(values)
    if m is None or s is None:
        return []
    if m == 0:
        return [] if min(values) == max(values) else ["mean is 0, relative spread undefined"]
    reasons = []
    cv = s / abs(m)
    if cv >= cv_limit:
        reasons.append(f"CV {cv:.1%} ≥ {cv_limit * 100:g}%")
    for i, x in enumerate(values, start=1):
        off = abs(x - m) / abs(m)
        if off >= outlier_limit:
            reasons.append(f"repetition {i} is {off:.0%} off the mean")
    return reasons

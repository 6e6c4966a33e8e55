"""Compare one metric between two cells or two runs from their per-repetition values.

Conventions:

- ratio = mean_b / mean_a ("b" is the candidate, "a" the baseline).
- ratio_ci95: percentile bootstrap (type-7 2.5 and 97.5 percentiles) of mean_b / mean_a over
  10,000 resamples drawn independently from each side with ``numpy.random.default_rng(0)``,
  so the same inputs always give the same interval. ``None`` when a side has fewer than two
  values, or when a resample of a has mean 0.
- Tests: "welch_t" (``scipy.stats.ttest_ind(equal_var=False)``) or "mann_whitney_u"
  (``scipy.stats.mannwhitneyu(alternative="two-sided")``, exact for small untied samples).
- Verdict: "not enough data" when a side has fewer than two values; "no significant
  difference" when p is undefined or p >= alpha; "below threshold" when significant but
  |ratio - 1| < min_effect; otherwise "better" or "worse" according to ``higher_is_better``.

Degenerate samples (decided here, without calling scipy, so no RuntimeWarning is raised):

- Every value on both sides equal: p_value is ``None`` and the verdict is "no significant
  difference" (there is no spread to test against, and no difference either).
- Welch t with both sides constant but different means: p_value is 0.0, the limit of the
  test as both variances go to 0; ``min_effect`` still guards against trivial differences.
  Mann-Whitney U handles this case itself (ties get the normal approximation).
- Welch t with one side constant is well defined (that side contributes no variance); scipy's
  "Precision loss" RuntimeWarning, a false alarm for exactly equal values, is silenced there.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

TESTS = ("welch_t", "mann_whitney_u")
_LABELS = {"welch_t": "Welch t", "mann_whitney_u": "Mann–Whitney U"}
RESAMPLES = 10_000


@dataclass(frozen=True, slots=True)
class Comparison:
    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    ratio: float  # mean_b / mean_a
    ratio_ci95: tuple[float, float] | None  # percentile bootstrap, default_rng(0)
    test: str  # "welch_t" or "mann_whitney_u"
    p_value: float | None
    significant: bool  # p_value is not None and p_value < alpha
    higher_is_better: bool
    verdict: str  # "better" | "worse" | "no significant difference" | "below threshold"
    # | "not enough data"


def compare(
    a: Sequence[float],
    b: Sequence[float],
    metric: str,
    *,
    higher_is_better: bool,
    test: str = "welch_t",
    alpha: float = 0.05,
    min_effect: float = 0.02,
) -> Comparison:
    """Compare baseline ``a`` with candidate ``b`` (see the module docstring for conventions).

    Raises ValueError for an unknown test, an empty side, a non-finite value, a baseline
    mean of 0 (ratio undefined), alpha outside (0, 1) or a negative min_effect.
    """
    _check_args(a, b, test, alpha, min_effect)
    mean_a, mean_b = math.fsum(a) / len(a), math.fsum(b) / len(b)
    if mean_a == 0:
        raise ValueError(f"{metric}: baseline mean is 0, so the ratio is undefined")
    ratio = mean_b / mean_a
    enough = len(a) >= 2 and len(b) >= 2
    p = _p_value(a, b, test) if enough else None
    significant = p is not None and p < alpha
    if not enough:
        verdict = "not enough data"
    elif not significant:
        verdict = "no significant difference"
    elif abs(ratio - 1) < min_effect:
        verdict = "below threshold"
    else:
        verdict = "better" if (mean_b > mean_a) == higher_is_better else "worse"
    return Comparison(
        metric=metric,
        n_a=len(a),
        n_b=len(b),
        mean_a=mean_a,
        mean_b=mean_b,
        ratio=ratio,
        ratio_ci95=bootstrap_ratio_ci95(a, b) if enough else None,
        test=test,
        p_value=p,
        significant=significant,
        higher_is_better=higher_is_better,
        verdict=verdict,
    )


def _check_args(
    a: Sequence[float], b: Sequence[float], test: str, alpha: float, min_effect: float
) -> None:
    if test not in TESTS:
        close = difflib.get_close_matches(test, TESTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown test {test!r}, choose one of {', '.join(TESTS)}{hint}")
    if not a or not b:
        raise ValueError("compare needs at least one value on each side")
    if not all(math.isfinite(x) for x in (*a, *b)):
        raise ValueError("compare needs finite values (no NaN or infinity)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} outside (0, 1)")
    if min_effect < 0:
        raise ValueError(f"min_effect={min_effect} must not be negative")


def _p_value(a: Sequence[float], b: Sequence[float], test: str) -> float | None:
    """Two-sided p-value; None when every value on both sides is equal."""
    a_const, b_const = min(a) == max(a), min(b) == max(b)
    if a_const and b_const and a[0] == b[0]:
        return None
    from scipy import stats as sps

    if test == "mann_whitney_u":
        return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if a_const and b_const:
        return 0.0
    with warnings.catch_warnings():
        if a_const or b_const:  # variance exactly 0, not the cancellation scipy warns about
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def bootstrap_ratio_ci95(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap 95 % interval of mean(b) / mean(a), resampling each side.

    ``None`` below two values on a side or when a resample of ``a`` has mean 0.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    import numpy as np

    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    means_a = xa[rng.integers(0, len(xa), size=(resamples, len(xa)))].mean(axis=1)
    means_b = xb[rng.integers(0, len(xb), size=(resamples, len(xb)))].mean(axis=1)
    if np.any(means_a == 0):
        return None
    lo, hi = np.percentile(means_b / means_a, [2.5, 97.5])
    return (float(lo), float(hi))


def format_comparison(c: Comparison) -> str:
    """One line: "tok_s: 142.1 → 136.4 (0.960x, 95% CI 0.940–0.980), Welch t p=0.003: worse".

    Means with 4 significant digits, ratio and its CI with 3 decimals, p with 2 significant
    digits; "n/a" where the CI or p-value is undefined.
    """
    ci = f"95% CI {c.ratio_ci95[0]:.3f}–{c.ratio_ci95[1]:.3f}" if c.ratio_ci95 else "95% CI n/a"
    p = "p n/a" if c.p_value is None else f"p={c.p_value:.2g}"
    return (
        f"{c.metric}: {c.mean_a:.4g} → {c.mean_b:.4g} ({c.ratio:.3f}x, {ci}), "
        f"{_LABELS[c.test]} {p}: {c.verdict}"
    )

import math

import numpy as np
import pytest

from harness.metrics.stats import (
    instability,
    mad,
    median,
    min_samples_for,
    percentile,
    sample_std,
    summarize,
    t_ci95,
    t_quantile,
)


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_is_type7_like_numpy(q: float) -> None:
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3]
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_by_hand() -> None:
    # h = (4 - 1) * 0.95 = 2.85 -> 30 + 0.85 * (40 - 30) = 38.5
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_sample_std_uses_n_minus_1() -> None:
    assert sample_std([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7))
    assert sample_std([1.0]) is None


def test_summarize() -> None:
    s = summarize([10.0, 12.0, 14.0])
    assert (s.n, s.mean, s.std, s.min, s.max) == (3, 12.0, 2.0, 10.0, 14.0)
    assert s.cv == pytest.approx(2 / 12)
    empty = summarize([])
    assert (empty.mean, empty.std, empty.cv) == (None, None, None)


def _t975_closed_form(df: int) -> float:
    """Closed-form Student-t quantiles (Hill 1970) for df = 2 and 4, independent of scipy."""
    p = 0.975
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    a = 4 * p * (1 - p)
    return 2 * math.sqrt(math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a) - 1)


@pytest.mark.parametrize(("df", "table"), [(2, 4.3027), (4, 2.7764), (9, 2.2622)])
def test_t_quantile_matches_t_tables(df: int, table: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(table, abs=5e-5)
    assert t_quantile(0.025, df) == pytest.approx(-t_quantile(0.975, df))  # symmetric
    if df in (2, 4):
        assert t_quantile(0.975, df) == pytest.approx(_t975_closed_form(df), rel=1e-12)


def test_t_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="outside"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile(0.975, 0)


def test_t_ci95_by_hand() -> None:
    # mean 2, s = 1, n = 3: 2 ± t(0.975, 2) · 1 / sqrt(3); t(0.975, 2) = 4.3026527297...
    half = 4.302652729911275 / math.sqrt(3)
    assert half == pytest.approx(_t975_closed_form(2) / math.sqrt(3), rel=1e-9)
    assert t_ci95([1.0, 2.0, 3.0]) == pytest.approx((2 - half, 2 + half))
    assert t_ci95([4.0, 4.0]) == (4.0, 4.0)
    assert t_ci95([1.0]) is None
    assert t_ci95([]) is None


@pytest.mark.parametrize(
    ("q", "confidence", "n"),
    [
        *[(50, 0.95, 5), (90, 0.95, 29), (95, 0.95, 59), (99, 0.95, 299)],
        *[(50, 0.99, 7), (90, 0.99, 44), (95, 0.99, 90), (99, 0.99, 459)],
    ],
)
def test_min_samples_for_matches_the_table(q: float, confidence: float, n: int) -> None:
    assert min_samples_for(q, confidence) == n
    p = q / 100
    assert 1 - p**n >= confidence > 1 - p ** (n - 1)  # smallest such n


def test_min_samples_for_exact_boundary_and_errors() -> None:
    assert min_samples_for(50, 0.75) == 2  # 1 - 0.5^2 = 0.75 exactly
    assert min_samples_for(10, 0.5) == 1
    for q in (0, 100, -1, 101):
        with pytest.raises(ValueError, match="strictly between 0 and 100"):
            min_samples_for(q)
    with pytest.raises(ValueError, match="confidence"):
        min_samples_for(50, 1.0)


def test_median_and_mad_by_hand() -> None:
    xs = [9.0, 1.0, 2.0, 6.0, 1.0, 4.0, 2.0]
    # sorted 1 1 2 2 4 6 9 -> median 2; |x - 2| sorted 0 0 1 1 2 4 7 -> MAD 1 (unscaled)
    assert median(xs) == 2.0
    assert mad(xs) == 1.0
    # even n: median (2 + 3) / 2 = 2.5; deviations 1.5 .5 .5 1.5 -> MAD 1.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert mad([4.0, 1.0, 3.0, 2.0]) == 1.0
    assert (median([7.0]), mad([7.0])) == (7.0, 0.0)
    assert (median([]), mad([])) == (None, None)


def test_summarize_fills_the_new_fields() -> None:
    s = summarize([14.0, 10.0, 12.0])
    assert (s.median, s.mad) == (12.0, 2.0)
    half = 4.302652729911275 * 2 / math.sqrt(3)
    assert (s.ci95_lo, s.ci95_hi) == pytest.approx((12 - half, 12 + half))
    one = summarize([5.0])
    assert (one.median, one.mad, one.ci95_lo, one.ci95_hi) == (5.0, 0.0, None, None)
    empty = summarize([])
    assert (empty.median, empty.mad, empty.ci95_lo, empty.ci95_hi) == (None,) * 4


def test_instability_stable_and_too_few_values() -> None:
    assert instability([100.0, 101.0, 99.0, 100.0]) == []
    assert instability([100.0]) == []
    assert instability([]) == []
    assert instability([0.0, 0.0]) == []


def test_instability_flags_high_cv() -> None:
    # mean 100, s = 12 -> CV 12.0 %; largest deviation 12 % < 50 %
    assert instability([88.0, 100.0, 112.0]) == ["CV 12.0% ≥ 10%"]
    assert instability([88.0, 100.0, 112.0], cv_limit=0.125) == []
    assert instability([88.0, 100.0, 112.0], cv_limit=0.12) == ["CV 12.0% ≥ 12%"]


def test_instability_flags_one_outlier() -> None:
    # 99 x 100 and one 200: mean 101, s = 10 (CV 9.9 %), 200 is 99/101 = 98 % off
    assert instability([100.0] * 99 + [200.0]) == ["repetition 100 is 98% off the mean"]


def test_instability_flags_both() -> None:
    # mean 140, s = sqrt(4800) = 69.3 (CV 49.5 %); 220 is 80/140 = 57 % off
    assert instability([100.0, 220.0, 100.0]) == [
        "CV 49.5% ≥ 10%",
        "repetition 2 is 57% off the mean",
    ]


def test_instability_zero_mean() -> None:
    assert instability([-1.0, 1.0]) == ["mean is 0, relative spread undefined"]

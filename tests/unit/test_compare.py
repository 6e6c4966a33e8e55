import math

import pytest

from harness.metrics.compare import Comparison, bootstrap_ratio_ci95, compare, format_comparison

A = [10.0, 12.0, 14.0]  # mean 12, s^2 = 4
B = [15.0, 17.0, 19.0, 21.0]  # mean 18, s^2 = 20/3


def _t2_two_sided_p(t: float) -> float:
    """Two-sided p of Student t with 2 df in closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_welch_p_value_follows_the_formula() -> None:
    from scipy import stats as sps

    va, vb = 4 / 3, (20 / 3) / 4  # s^2 / n per side
    t = (12 - 18) / math.sqrt(va + vb)  # -6 / sqrt(3) = -3.464
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch–Satterthwaite: 9 / 1.8148 = 4.959
    assert df == pytest.approx(4.959183673469387)
    c = compare(A, B, "x", higher_is_better=True)
    assert c.p_value == pytest.approx(2 * sps.t.sf(abs(t), df))
    assert c.p_value == pytest.approx(0.0182018, rel=1e-5)
    assert (c.significant, c.verdict) == (True, "better")


def test_welch_p_value_without_scipy_when_df_is_2() -> None:
    # equal variances, n = 2 each: df = 2(n - 1) = 2; t = 3 / sqrt(1 + 1)
    c = compare([1.0, 3.0], [4.0, 6.0], "x", higher_is_better=True)
    assert c.p_value == pytest.approx(_t2_two_sided_p(3 / math.sqrt(2)), rel=1e-9)
    assert c.p_value == pytest.approx(0.1679497, rel=1e-6)
    assert c.verdict == "no significant difference"


def test_welch_with_one_constant_side() -> None:
    # a contributes no variance: se^2 = 1/3, df = 2, t = 2 / sqrt(1/3) = 2 sqrt(3)
    c = compare([5.0, 5.0, 5.0], [6.0, 7.0, 8.0], "x", higher_is_better=True)
    assert c.p_value == pytest.approx(_t2_two_sided_p(2 * math.sqrt(3)), rel=1e-9)
    assert c.verdict == "no significant difference"


def test_mann_whitney_exact_on_separated_samples() -> None:
    # U = 0 is 1 of C(10, 5) = 252 arrangements per tail: p = 2 / 252
    lo, hi = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]
    c = compare(lo, hi, "x", higher_is_better=True, test="mann_whitney_u")
    assert c.p_value == pytest.approx(2 / 252)
    assert (c.test, c.verdict) == ("mann_whitney_u", "better")
    assert compare(hi, lo, "x", higher_is_better=True, test="mann_whitney_u").p_value == (
        pytest.approx(2 / 252)
    )


SLOW = [100.0, 101.0, 99.0, 100.5, 99.5]
FAST = [110.0, 111.0, 109.0, 110.5, 109.5]


@pytest.mark.parametrize(
    ("a", "b", "higher_is_better", "verdict"),
    [
        (SLOW, FAST, True, "better"),  # throughput went up
        (SLOW, FAST, False, "worse"),  # latency went up
        (FAST, SLOW, True, "worse"),
        (FAST, SLOW, False, "better"),
    ],
)
@pytest.mark.parametrize("test", ["welch_t", "mann_whitney_u"])
def test_verdict_direction(
    a: list[float], b: list[float], higher_is_better: bool, verdict: str, test: str
) -> None:
    c = compare(a, b, "m", higher_is_better=higher_is_better, test=test)
    assert c.significant
    assert c.verdict == verdict
    assert c.ratio == pytest.approx(sum(b) / sum(a))


def test_significant_but_below_threshold() -> None:
    a = [100.0, 100.1, 99.9, 100.05, 99.95]
    b = [x + 1 for x in a]  # ratio 1.01, t about 20
    c = compare(a, b, "m", higher_is_better=True)
    assert c.p_value is not None and c.p_value < 1e-6
    assert (c.significant, c.verdict) == (True, "below threshold")
    assert compare(a, b, "m", higher_is_better=True, min_effect=0.005).verdict == "better"


def test_not_enough_data() -> None:
    c = compare([1.0], [1.0, 2.0, 3.0], "m", higher_is_better=True)
    assert (c.n_a, c.n_b, c.mean_a, c.mean_b, c.ratio) == (1, 3, 1.0, 2.0, 2.0)
    assert (c.p_value, c.ratio_ci95, c.significant, c.verdict) == (
        None,
        None,
        False,
        "not enough data",
    )


def test_overlapping_samples_are_not_significant() -> None:
    c = compare([10.0, 12.0, 11.0], [11.5, 10.5, 12.5], "m", higher_is_better=True)
    assert c.p_value is not None and c.p_value > 0.05
    assert c.verdict == "no significant difference"


@pytest.mark.parametrize("test", ["welch_t", "mann_whitney_u"])
def test_both_sides_constant_and_equal(test: str) -> None:
    c = compare([5.0, 5.0, 5.0], [5.0, 5.0], "m", higher_is_better=True, test=test)
    assert (c.p_value, c.significant, c.verdict) == (None, False, "no significant difference")
    assert (c.ratio, c.ratio_ci95) == (1.0, (1.0, 1.0))


def test_both_sides_constant_and_different() -> None:
    welch = compare([5.0, 5.0, 5.0], [6.0, 6.0, 6.0], "m", higher_is_better=True)
    assert (welch.p_value, welch.significant, welch.verdict) == (0.0, True, "better")
    assert welch.ratio_ci95 == (1.2, 1.2)
    # Mann-Whitney: U = 0 with two tie groups of 3, normal approximation with tie correction
    # and continuity correction: z = (4.5 - 0.5) / sqrt(4.05)
    mwu = compare(
        [5.0, 5.0, 5.0], [6.0, 6.0, 6.0], "m", higher_is_better=True, test="mann_whitney_u"
    )
    assert mwu.p_value == pytest.approx(math.erfc(4 / math.sqrt(4.05) / math.sqrt(2)))
    assert mwu.verdict == "better"


def test_bootstrap_ci_contains_the_ratio_and_is_reproducible() -> None:
    c = compare(A, B, "x", higher_is_better=True)
    assert c.ratio_ci95 is not None
    lo, hi = c.ratio_ci95
    assert 15 / 14 <= lo < c.ratio == 1.5 < hi <= 21 / 10  # resampled means stay in range
    assert compare(A, B, "x", higher_is_better=True) == c
    assert bootstrap_ratio_ci95(A, B) == c.ratio_ci95
    # the seed matters (with small integer data both seeds can land on the same atoms)
    a, b = [10.3, 12.7, 14.1, 11.9, 13.4], [15.2, 17.9, 19.4, 21.1, 16.6]
    assert bootstrap_ratio_ci95(a, b) == bootstrap_ratio_ci95(a, b, seed=0)
    assert bootstrap_ratio_ci95(a, b, seed=1) != bootstrap_ratio_ci95(a, b)


def test_bootstrap_is_undefined_when_a_resample_mean_is_zero() -> None:
    assert bootstrap_ratio_ci95([0.0, 1.0], [1.0, 2.0]) is None
    assert bootstrap_ratio_ci95([1.0], [1.0, 2.0]) is None


def test_bad_test_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of welch_t, mann_whitney_u") as err:
        compare(A, B, "x", higher_is_better=True, test="welch")
    assert "did you mean 'welch_t'?" in str(err.value)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([], [1.0], {}, "at least one value"),
        ([1.0, math.nan], [1.0], {}, "finite"),
        ([0.0, 0.0], [1.0, 2.0], {}, "baseline mean is 0"),
        (A, B, {"alpha": 0.0}, "alpha"),
        (A, B, {"min_effect": -0.1}, "min_effect"),
    ],
)
def test_bad_input_raises(
    a: list[float], b: list[float], kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compare(a, b, "x", higher_is_better=True, **kwargs)  # type: ignore[arg-type]


def _comparison(**changes: object) -> Comparison:
    base: dict[str, object] = {
        "metric": "output_throughput_tok_s",
        "n_a": 5,
        "n_b": 5,
        "mean_a": 142.1,
        "mean_b": 136.4,
        "ratio": 136.4 / 142.1,
        "ratio_ci95": (0.94, 0.98),
        "test": "welch_t",
        "p_value": 0.003,
        "significant": True,
        "higher_is_better": True,
        "verdict": "worse",
    }
    return Comparison(**{**base, **changes})  # type: ignore[arg-type]


def test_format_comparison() -> None:
    assert format_comparison(_comparison()) == (
        "output_throughput_tok_s: 142.1 → 136.4 (0.960x, 95% CI 0.940–0.980), "
        "Welch t p=0.003: worse"
    )
    missing = _comparison(
        test="mann_whitney_u", p_value=None, ratio_ci95=None, verdict="not enough data"
    )
    assert format_comparison(missing) == (
        "output_throughput_tok_s: 142.1 → 136.4 (0.960x, 95% CI n/a), Mann–Whitney U p n/a: "
        "not enough data"
    )

"""The exact (Clopper–Pearson) envelope of 0/1 slices: small-n gates, A/A false alarms, and a
planted regression. Expected bounds are computed here from closed forms, not from the module."""

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.quality.scorecard import (
    CI_BOOTSTRAP,
    CI_ENVELOPE,
    GateConfig,
    SliceGate,
    Verdict,
    clopper_pearson_upper,
    scorecard,
)

SMOKE = GateConfig(default=SliceGate(max_drop=0.05, min_items=10))  # 5-point gate on 10 items
GATE_2PT = GateConfig(default=SliceGate(max_drop=0.02))


def _binary(lost: int, gained: int, same_right: int, same_wrong: int) -> tuple[dict, dict]:
    kinds = [(True, False)] * lost + [(False, True)] * gained
    kinds += [(True, True)] * same_right + [(False, False)] * same_wrong
    base = {f"x{k}": b for k, (b, _) in enumerate(kinds)}
    var = {f"x{k}": v for k, (_, v) in enumerate(kinds)}
    return {"math": base}, {"math": var}


def test_clopper_pearson_upper_closed_forms() -> None:
    # k = 0: P(X = 0) = (1 − p)^n = 0.025 at the bound → p = 1 − 0.025^(1/n)
    for n in (1, 10, 200):
        assert clopper_pearson_upper(0, n, 0.95) == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
    assert clopper_pearson_upper(0, 10, 0.8) == pytest.approx(1 - 0.1 ** (1 / 10), rel=1e-9)
    assert clopper_pearson_upper(10, 10, 0.95) == 1.0
    ci = binomtest(7, 10).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson_upper(7, 10, 0.95) == pytest.approx(ci.high, rel=1e-9)


def test_no_flips_in_ten_items_is_inconclusive() -> None:
    """The old bootstrap gave [0, 0] and a PASS; 0 losses in 10 allow a 30.8 % loss rate."""
    base, _ = _binary(0, 0, same_right=6, same_wrong=4)
    r = scorecard(base, base, SMOKE).slices[0]
    u = 1 - 0.025 ** (1 / 10)  # ≈ 0.3085
    assert u == pytest.approx(0.3085, abs=1e-4)
    assert (r.n, r.delta, r.ci_method) == (10, 0.0, CI_ENVELOPE)
    assert r.delta_ci == pytest.approx((-u, u), rel=1e-9)
    assert r.delta_ci95 == r.delta_ci
    assert (r.verdict, r.reason) == (
        Verdict.INCONCLUSIVE,
        "95% CI [-30.85, +30.85] pt straddles -5.00 pt",
    )


def test_no_flips_in_200_items_passes_a_two_point_gate() -> None:
    base, _ = _binary(0, 0, same_right=120, same_wrong=80)
    r = scorecard(base, base, GATE_2PT).slices[0]
    u = 1 - 0.025 ** (1 / 200)  # ≈ 0.01828 < 0.02
    assert u == pytest.approx(0.01828, abs=1e-5)
    assert r.delta_ci == pytest.approx((-u, u), rel=1e-9)
    assert (r.verdict, r.reason) == (Verdict.PASS, "95% CI lower bound -1.83 ≥ -2.00 pt")


def test_seven_losses_in_ten_fail_the_smoke_gate() -> None:
    base, var = _binary(7, 0, same_right=2, same_wrong=1)
    r = scorecard(base, var, SMOKE).slices[0]
    assert (r.n, r.flips_lost, r.flips_gained) == (10, 7, 0)
    assert r.delta == pytest.approx(-0.7)
    assert r.delta_ci is not None
    # upper: U_0 − 7/10 = 1 − 0.025^(1/10) − 0.7 ≈ −0.3915, above the bootstrap's −0.4
    # (the 2.5 % quantile of Bin(10, 0.7) is 4 losses); lower: 0 − U_7 (exact, from scipy)
    hi = 1 - 0.025 ** (1 / 10) - 0.7
    u7 = binomtest(7, 10).proportion_ci(confidence_level=0.95, method="exact").high
    assert r.delta_ci[1] == pytest.approx(hi, rel=1e-9)
    assert r.delta_ci[0] == pytest.approx(min(-1.0, -u7))  # bootstrap low end: all 10 lost
    assert r.verdict is Verdict.FAIL
    assert r.reason == "95% CI upper bound -39.15 < -5.00 pt"


def test_envelope_follows_the_gate_confidence() -> None:
    gates = GateConfig(default=SliceGate(max_drop=0.05, confidence=0.8, min_items=10))
    base, _ = _binary(0, 0, same_right=6, same_wrong=4)
    r = scorecard(base, base, gates).slices[0]
    u80, u95 = 1 - 0.1 ** (1 / 10), 1 - 0.025 ** (1 / 10)  # one-sided levels 0.9 and 0.975
    assert r.delta_ci == pytest.approx((-u80, u80), rel=1e-9)
    assert r.delta_ci95 == pytest.approx((-u95, u95), rel=1e-9)


def test_partial_credit_keeps_the_bare_bootstrap() -> None:
    base = {"s": {f"q{i}": 0.5 for i in range(40)}}
    r = scorecard(base, base, GATE_2PT).slices[0]
    assert (r.binary, r.ci_method, r.delta_ci) == (False, CI_BOOTSTRAP, (0.0, 0.0))
    assert r.verdict is Verdict.PASS


def test_a_a_symmetric_flips_rarely_fail() -> None:
    """300 A/A comparisons: base ~ Bernoulli(0.6), n = 200; the variant re-draws each item from
    Bernoulli(0.6) with probability 0.2 (true Δ = 0). One-sided error at the threshold is 2.5 %,
    and Δ = 0 is 2 pt above it (≈ 0.2 % by the normal approximation), so FAILs must be rarer
    than 3 %. Observed with this seed: 1/300 FAIL, 56 PASS, 243 INCONCLUSIVE (≈ 19 discordant
    items per slice, so the exact envelope lies inside the bootstrap CI and changes nothing)."""
    rng = np.random.default_rng(2024)
    verdicts: list[Verdict] = []
    for run in range(300):
        b = rng.random(200) < 0.6
        v = np.where(rng.random(200) < 0.2, rng.random(200) < 0.6, b)
        ids = [f"i{k:03d}" for k in range(200)]
        base = {"math": dict(zip(ids, b.tolist(), strict=True))}
        var = {"math": dict(zip(ids, v.tolist(), strict=True))}
        verdicts.append(scorecard(base, var, GATE_2PT, seed=run).slices[0].verdict)
    fail_rate = verdicts.count(Verdict.FAIL) / len(verdicts)
    assert fail_rate <= 0.03


@pytest.mark.parametrize("seed", range(5))
def test_identical_scores_pass_every_slice_at_200(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = {f"s{j}": {f"i{k:03d}": bool(rng.random() < 0.6) for k in range(200)} for j in range(5)}
    card = scorecard(base, base, GATE_2PT, seed=seed)
    assert [r.verdict for r in card.slices] == [Verdict.PASS] * 5
    assert card.verdict is Verdict.PASS


def test_planted_thirty_percent_regression_fails_only_that_slice() -> None:
    rng = np.random.default_rng(11)
    names = [f"s{j}" for j in range(5)]
    base = {s: {f"i{k:03d}": bool(rng.random() < 0.6) for k in range(200)} for s in names}
    right = sorted(i for i, ok in base["s2"].items() if ok)
    hit = set(rng.choice(right, size=round(0.3 * len(right)), replace=False).tolist())
    variant = {s: dict(items) for s, items in base.items()}
    variant["s2"] = {i: ok and i not in hit for i, ok in base["s2"].items()}
    card = scorecard(base, variant, GATE_2PT)
    by = {r.slice: r for r in card.slices}
    assert (by["s2"].verdict, by["s2"].flips_lost, by["s2"].flips_gained) == (
        Verdict.FAIL,
        len(hit),
        0,
    )
    assert by["s2"].delta == pytest.approx(-len(hit) / 200)
    assert [by[s].verdict for s in names if s != "s2"] == [Verdict.PASS] * 4
    assert (card.verdict, card.reason) == (Verdict.FAIL, "failed: s2")

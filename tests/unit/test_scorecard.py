import math
import re

import numpy as np
import pytest

from harness.quality.scorecard import (
    CI_BOOTSTRAP,
    CI_ENVELOPE,
    CI_NONE,
    RESAMPLES,
    SCORECARD_VERSION,
    GateConfig,
    Scores,
    SliceGate,
    Verdict,
    format_scorecard,
    holm,
    mcnemar_exact,
    paired_bootstrap_means,
    scorecard,
)

SLICES = ("math", "structured", "if", "mc")
GATES = GateConfig(default=SliceGate(max_drop=0.02))
Probs = dict[str, dict[str, float]]


def _model(rng: np.random.Generator, n_items: int = 400) -> Probs:
    """Per-item probabilities of a near-deterministic (greedy) model: 70 % of the items it almost
    always gets right (0.99), the rest almost always wrong (0.01)."""
    return {
        s: {f"{s}-{i:04d}": (0.99 if rng.random() < 0.7 else 0.01) for i in range(n_items)}
        for s in SLICES
    }


def _draw(probs: Probs, rng: np.random.Generator) -> dict[str, dict[str, float | bool]]:
    return {s: {i: bool(rng.random() < p) for i, p in items.items()} for s, items in probs.items()}


def corrupt(
    results: Scores, slice_name: str, fraction: float, seed: int = 0
) -> tuple[dict[str, dict[str, float | bool]], set[str]]:
    """The planted regression: a copy of ``results`` with ``fraction`` of one slice's correct
    answers turned wrong; also returns the corrupted item ids."""
    rng = np.random.default_rng(seed)
    right = sorted(i for i, ok in results[slice_name].items() if ok)
    hit = set(rng.choice(right, size=round(fraction * len(right)), replace=False).tolist())
    out = {s: dict(items) for s, items in results.items()}
    out[slice_name] = {i: (False if i in hit else ok) for i, ok in results[slice_name].items()}
    return out, hit


def _pairs(lost: int, gained: int, both_right: int, both_wrong: int) -> tuple[Scores, Scores]:
    base: dict[str, float | bool] = {}
    var: dict[str, float | bool] = {}
    kinds = [(True, False)] * lost + [(False, True)] * gained
    kinds += [(True, True)] * both_right + [(False, False)] * both_wrong
    for k, (b, v) in enumerate(kinds):
        base[f"x{k}"], var[f"x{k}"] = b, v
    return {"math": base}, {"math": var}


def test_a_a_identical_results_pass_every_slice() -> None:
    base = _draw(_model(np.random.default_rng(0)), np.random.default_rng(1))
    card = scorecard(base, base, GATES)
    assert [r.slice for r in card.slices] == sorted(SLICES)
    # Since version 2 the 0/1 CI is not the degenerate bootstrap [0, 0] but the exact envelope:
    # no flips in 400 → ±(1 − 0.025^(1/400)) ≈ ±0.92 pt, still inside the 2-point gate.
    u = 1 - 0.025 ** (1 / 400)
    for r in card.slices:
        assert (r.verdict, r.delta, r.delta_se, r.ci_method) == (
            Verdict.PASS,
            0.0,
            0.0,
            CI_ENVELOPE,
        )
        assert r.delta_ci95 == pytest.approx((-u, u), rel=1e-9)
        assert r.delta_ci == r.delta_ci95  # the gate's confidence is 0.95
        assert (r.flips_lost, r.flips_gained, r.mcnemar_p, r.unpaired) == (0, 0, 1.0, 0)
        assert r.n == 400 and r.score_base == r.score_variant
    assert (card.verdict, card.reason, card.aggregate_delta) == (
        Verdict.PASS,
        "all 4 slices pass",
        0.0,
    )
    assert (card.resamples, card.seed, card.version) == (RESAMPLES, 0, SCORECARD_VERSION)


def test_repeated_a_a_redraws_never_fail() -> None:
    """50 A/A runs: the variant is an independent re-draw of the same per-item probabilities
    (≈2 % discordant items). No slice may FAIL; most should be shown to PASS."""
    rng = np.random.default_rng(42)
    verdicts: list[Verdict] = []
    for run in range(50):
        probs = _model(rng)
        card = scorecard(_draw(probs, rng), _draw(probs, rng), GATES, seed=run)
        verdicts += [r.verdict for r in card.slices]
        assert card.verdict is not Verdict.FAIL, format_scorecard(card)
    assert len(verdicts) == 200 and Verdict.FAIL not in verdicts
    # the gate is not trivially inconclusive (144 PASS since the exact envelope of version 2,
    # 165 with the bare bootstrap of version 1)
    assert verdicts.count(Verdict.PASS) >= 120


def test_planted_regression_fails_that_slice_only() -> None:
    base = _draw(_model(np.random.default_rng(5), n_items=300), np.random.default_rng(6))
    variant, hit = corrupt(base, "math", 0.15)
    card = scorecard(base, variant, GATES)
    by = {r.slice: r for r in card.slices}
    assert by["math"].verdict is Verdict.FAIL
    assert (by["math"].flips_lost, by["math"].flips_gained) == (len(hit), 0)
    right = sum(bool(ok) for ok in base["math"].values())
    assert len(hit) == round(0.15 * right)
    assert by["math"].delta == pytest.approx(-len(hit) / 300)
    assert re.fullmatch(r"95% CI upper bound -\d+\.\d\d < -2\.00 pt", by["math"].reason)
    assert all(by[s].verdict is Verdict.PASS for s in SLICES if s != "math")
    assert (card.verdict, card.reason) == (Verdict.FAIL, "failed: math")


def test_planted_regression_on_a_noisy_redraw() -> None:
    rng = np.random.default_rng(7)
    probs = _model(rng, n_items=300)
    base = _draw(probs, rng)
    variant, _ = corrupt(_draw(probs, rng), "structured", 0.15, seed=3)
    by = {r.slice: r for r in scorecard(base, variant, GATES).slices}
    assert by["structured"].verdict is Verdict.FAIL
    assert all(by[s].verdict is not Verdict.FAIL for s in SLICES if s != "structured")


def test_flips_delta_se_and_mcnemar_by_hand() -> None:
    base, var = _pairs(lost=7, gained=2, both_right=20, both_wrong=11)
    r = scorecard(base, var, GATES).slices[0]
    assert (r.n, r.flips_lost, r.flips_gained, r.binary) == (40, 7, 2, True)
    assert r.score_base == pytest.approx(27 / 40) and r.score_variant == pytest.approx(22 / 40)
    assert r.delta == pytest.approx(-5 / 40)
    # s² of d = (Σd² − n·mean²)/(n − 1) = (9 − 40/64)/39
    assert r.delta_se == pytest.approx(math.sqrt((9 - 40 / 64) / 39 / 40))
    p = 22 / 40  # variant SE for 0/1 scores: √(p(1 − p)/(n − 1))
    assert r.se_variant == pytest.approx(math.sqrt(p * (1 - p) / 39))
    # exact two-sided binomial: 2 · P(X ≤ 2 | n = 9, 1/2) = 2 · (1 + 9 + 36) / 512
    assert r.mcnemar_p == pytest.approx(92 / 512)
    from scipy.stats import binomtest

    assert r.mcnemar_p == pytest.approx(binomtest(7, 9, 0.5).pvalue)
    assert r.mcnemar_p_holm == r.mcnemar_p  # one tested slice: nothing to adjust


def test_mcnemar_without_discordant_items_is_one() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)


def test_bootstrap_ci_matches_normal_approximation_and_is_order_free() -> None:
    base, var = _pairs(lost=160, gained=80, both_right=1200, both_wrong=560)
    r = scorecard(base, var, GATES).slices[0]
    assert r.delta == pytest.approx(-0.04)
    assert r.delta_se is not None and r.delta_ci95 is not None
    lo, hi = r.delta_ci95
    # 240 discordant items: the exact ends [4 − 9.28, 4.95 − 8] pt = [−5.28, −3.05] pt lie inside
    # the bootstrap's, so the envelope is the bootstrap CI itself.
    assert r.ci_method == CI_ENVELOPE
    assert lo == pytest.approx(-0.04 - 1.96 * r.delta_se, abs=0.002)
    assert hi == pytest.approx(-0.04 + 1.96 * r.delta_se, abs=0.002)
    assert r.verdict is Verdict.FAIL  # upper ≈ −2.9 pt < −2 pt
    reversed_items = {s: dict(reversed(list(v.items()))) for s, v in var.items()}
    again = scorecard(base, reversed_items, GATES).slices[0]
    assert again.delta_ci95 == r.delta_ci95  # same seed, item order irrelevant
    assert scorecard(base, var, GATES, seed=1).slices[0].delta_ci95 != r.delta_ci95


def test_multinomial_bootstrap_matches_item_resampling() -> None:
    """Counts of each distinct d drawn from a multinomial = resampling the items themselves."""
    d = np.array([-1.0] * 7 + [1.0] * 2 + [0.0] * 31)
    rng = np.random.default_rng(0)
    fast = paired_bootstrap_means(d, rng, 100_000)
    items = d[rng.integers(0, d.size, size=(100_000, d.size))].mean(axis=1)
    assert fast.mean() == pytest.approx(items.mean(), abs=0.001)
    assert fast.std() == pytest.approx(d.std() / math.sqrt(d.size), rel=0.01)  # σ/√n
    assert np.percentile(fast, [2.5, 97.5]) == pytest.approx(np.percentile(items, [2.5, 97.5]))


def test_ci_straddling_the_threshold_is_inconclusive() -> None:
    base, var = _pairs(lost=6, gained=3, both_right=60, both_wrong=31)
    card = scorecard(base, var, GATES)
    r = card.slices[0]
    assert r.verdict is Verdict.INCONCLUSIVE
    assert re.fullmatch(r"95% CI \[-\d+\.\d\d, \+\d+\.\d\d\] pt straddles -2\.00 pt", r.reason)
    assert (card.verdict, card.reason) == (Verdict.INCONCLUSIVE, "inconclusive: math")


def test_too_few_items_is_inconclusive() -> None:
    base, _ = _pairs(lost=0, gained=0, both_right=8, both_wrong=4)
    card = scorecard(base, base, GATES)
    assert (card.slices[0].verdict, card.slices[0].reason) == (
        Verdict.INCONCLUSIVE,
        "n=12 < 30 items",
    )
    assert card.verdict is Verdict.INCONCLUSIVE


def test_unpaired_items_are_excluded_and_counted() -> None:
    base, var = _pairs(lost=0, gained=0, both_right=30, both_wrong=10)
    kept = {i: ok for i, ok in var["math"].items() if i not in ("x0", "x1", "x2")}
    r = scorecard(base, {"math": {**kept, "extra": True}}, GATES).slices[0]
    assert (r.n, r.unpaired) == (37, 4)


def test_slice_without_results_is_inconclusive_not_a_pass() -> None:
    base, _ = _pairs(lost=0, gained=0, both_right=30, both_wrong=10)
    card = scorecard(base, base, GATES, slices=["math", "ctx_4k"])
    ctx = card.slices[1]
    assert (ctx.slice, ctx.n, ctx.verdict, ctx.reason) == (
        "ctx_4k",
        0,
        Verdict.INCONCLUSIVE,
        "no paired items",
    )
    assert ctx.delta is None and ctx.mcnemar_p is None
    assert (ctx.delta_ci, ctx.ci_method) == (None, CI_NONE)
    assert card.verdict is Verdict.INCONCLUSIVE
    assert card.aggregate_base == card.slices[0].score_base  # slices without items are left out


def test_partial_credit_scores() -> None:
    ids = [f"q{i}" for i in range(40)]
    base = {"structured": {i: 0.5 for i in ids}}
    var = {
        "structured": {i: (0.25 if k < 10 else 0.75 if k < 12 else 0.5) for k, i in enumerate(ids)}
    }
    r = scorecard(base, var, GATES).slices[0]
    assert (r.binary, r.mcnemar_p, r.mcnemar_p_holm) == (False, None, None)
    assert r.ci_method == CI_BOOTSTRAP  # no exact envelope for partial credit
    assert (r.flips_lost, r.flips_gained) == (10, 2)
    assert r.delta == pytest.approx((10 * -0.25 + 2 * 0.25) / 40)


def test_scores_outside_unit_interval_raise() -> None:
    with pytest.raises(ValueError, match=r"slice 'math' item 'a': score 1.5 outside \[0, 1\]"):
        scorecard({"math": {"a": 1.5}}, {"math": {"a": 1.0}}, GATES)
    with pytest.raises(ValueError, match="outside"):
        scorecard({"math": {"a": float("nan")}}, {"math": {"a": 1.0}}, GATES)


def test_unknown_slice_in_gates_names_the_valid_slices() -> None:
    gates = GateConfig(default=SliceGate(0.02), slices={"maths": SliceGate(0.05)})
    base, _ = _pairs(lost=0, gained=0, both_right=30, both_wrong=10)
    base = {**base, "code": base["math"]}
    with pytest.raises(ValueError) as err:
        scorecard(base, base, gates)
    assert str(err.value) == (
        "unknown slice 'maths' in the gate thresholds; valid slices: code, math; "
        "did you mean 'math'?"
    )
    with pytest.raises(ValueError, match="valid slices: if, mc"):
        gates.check_slices(["mc", "if"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_drop": 2.0}, "must be a fraction"),
        ({"max_drop": 0.02, "confidence": 95}, r"confidence=95 outside \(0, 1\)"),
        ({"max_drop": 0.02, "min_items": 1}, "min_items=1 must be at least 2"),
    ],
)
def test_slice_gate_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SliceGate(**kwargs)  # type: ignore[arg-type]


def test_per_slice_gate_and_confidence() -> None:
    base, var = _pairs(lost=6, gained=3, both_right=60, both_wrong=31)  # Δ = −3 pt
    gates = GateConfig(
        default=SliceGate(0.02),
        slices={"math": SliceGate(max_drop=0.15, confidence=0.8, min_items=50)},
    )
    r = scorecard(base, var, gates).slices[0]
    assert (r.max_drop, r.confidence, r.min_items) == (0.15, 0.8, 50)
    assert r.verdict is Verdict.PASS
    assert r.reason.startswith("80% CI lower bound -")
    assert r.delta_ci is not None and r.delta_ci95 is not None
    assert r.delta_ci95[0] < r.delta_ci[0] < r.delta_ci[1] < r.delta_ci95[1]


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01, 2·0.03, max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.9, 0.5]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_holm_across_slices() -> None:
    base_m, var_m = _pairs(lost=7, gained=2, both_right=20, both_wrong=11)
    base = {"math": base_m["math"], "mc": base_m["math"]}
    var = {"math": var_m["math"], "mc": base_m["math"]}  # mc unchanged: p = 1
    by = {r.slice: r for r in scorecard(base, var, GATES).slices}
    assert by["math"].mcnemar_p_holm == pytest.approx(2 * 92 / 512)
    assert by["mc"].mcnemar_p_holm == pytest.approx(1.0)


def test_format_scorecard_has_a_row_per_slice() -> None:
    base = _draw(_model(np.random.default_rng(8), n_items=200), np.random.default_rng(9))
    variant, hit = corrupt(base, "math", 0.15)
    card = scorecard(base, variant, GATES)
    text = format_scorecard(card)
    lines = text.splitlines()
    assert lines[0].startswith("| slice | n | base | variant | Δ (pt) | 95% CI (pt) | flips −/+")
    for r in card.slices:
        row = next(line for line in lines if line.startswith(f"| {r.slice} | 200 | "))
        assert f"| {r.verdict} |" in row
    math_row = next(line for line in lines if line.startswith("| math |"))
    assert f"| {len(hit)}/0 |" in math_row and "| FAIL |" in math_row
    assert "CI method: bootstrap+exact envelope (if, math, mc, structured)" in text
    assert "**Overall: FAIL** (failed: math)" in text
    assert "Aggregate (mean over slices, does not decide)" in text


def test_too_few_resamples_raise() -> None:
    with pytest.raises(ValueError, match="at least 1,000"):
        scorecard({}, {}, GATES, resamples=100)


def test_no_slices_is_inconclusive() -> None:
    card = scorecard({}, {}, GATES)
    assert (card.verdict, card.reason, card.aggregate_delta) == (
        Verdict.INCONCLUSIVE,
        "no slices scored",
        None,
    )

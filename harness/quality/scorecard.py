"""Per-slice paired comparison of a variant against its baseline, and the quality gate.

Conventions (docs: /work/shared/reference/quality.md §7):

- Scores are per item, in [0, 1]: ``True``/``False`` for right/wrong, floats for partial credit.
  Every score, delta and threshold here is a **fraction** (0.02 = 2 points); only the Markdown
  table and the reasons print points (×100).
- Items are paired by id; ids present on one side only are excluded and counted in ``unpaired``.
- d_i = variant_i − base_i; delta = mean(d); delta_se = s(d)/√n (sample std, n − 1);
  se_variant = s(variant)/√n (for 0/1 scores √(p(1 − p)/(n − 1))). ``None`` below n = 2.
- Confidence intervals of delta: paired percentile bootstrap (items resampled with their pair,
  ``RESAMPLES`` = 10,000 resamples, type-7 percentiles). Resampling n items uniformly is drawn
  exactly as a multinomial over the distinct values of d, so it is vectorised and cheap. Each
  slice's generator is ``numpy.random.default_rng([seed, crc32(slice)])``: a slice's interval does
  not depend on the other slices or on item order. ``ci_method`` = "bootstrap" for partial-credit
  slices, "none" without paired items.
- 0/1 slices (``ci_method`` = "bootstrap+exact envelope"): with few changed items the bootstrap
  degenerates (no discordant pair gives [0, 0], "proof" of no drop from 10 items). For them
  delta = g/n − l/n (l = flips_lost, g = flips_gained), and the interval at confidence c is the
  envelope [min(boot_lo, g/n − U_l), max(boot_hi, U_g − l/n)], where U_k is the exact
  Clopper–Pearson upper bound of the rate k/n at one-sided level (1 + c)/2 (the upper end of the
  two-sided c interval): the (1 + c)/2 quantile of Beta(k + 1, n − k), 1 when k = n. Each exact
  end takes the other flip count as observed and bounds one flip rate exactly; the envelope is
  never narrower than the bootstrap. Without flips it is ±(1 − ((1 − c)/2)^(1/n)): ±30.8 pt at
  n = 10, ±1.83 pt at n = 200 (c = 0.95). ``delta_ci95`` (c = 0.95) and ``delta_ci`` (the
  gate's c) are both envelopes.
- Flips: ``flips_lost`` = items where the variant scores lower (base right, variant wrong for 0/1
  scores), ``flips_gained`` the reverse. McNemar: exact two-sided binomial test of flips_lost
  against Bin(flips_lost + flips_gained, 1/2) when every score of the slice is 0 or 1, else
  ``None``; 1.0 without discordant items. ``mcnemar_p_holm``: Holm-adjusted across the slices
  that have a McNemar p. Reported only: the verdict comes from the CI.
- Verdict per slice, with the two-sided CI at the gate's ``confidence`` (so each one-sided
  decision errs with probability at most (1 − confidence)/2 at the threshold):
  INCONCLUSIVE if n < min_items; FAIL if the CI's upper bound < −max_drop; PASS if its lower
  bound ≥ −max_drop; otherwise INCONCLUSIVE (the CI straddles −max_drop).
- Overall: FAIL if any slice fails, else INCONCLUSIVE if any is inconclusive (or there is no
  slice), else PASS. The aggregate (unweighted mean over slices with items) never decides.
"""

from __future__ import annotations

import difflib
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

# Format history: "1" (first version); "2" adds SliceResult.ci_method, and the CIs of 0/1 slices
# are the bootstrap ∪ exact Clopper–Pearson envelope (see the module docstring).
SCORECARD_VERSION = "2"
CI_NONE, CI_BOOTSTRAP, CI_ENVELOPE = "none", "bootstrap", "bootstrap+exact envelope"
RESAMPLES = 10_000

Scores = Mapping[str, Mapping[str, float | bool]]  # slice → item id → score in [0, 1]
F64 = NDArray[np.float64]


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True, slots=True)
class SliceGate:
    """Fail a slice when its score drops more than ``max_drop`` (a fraction) with ``confidence``."""

    max_drop: float
    confidence: float = 0.95
    min_items: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.max_drop < 1:
            raise ValueError(f"max_drop={self.max_drop} must be a fraction in [0, 1) (0.02 = 2 pt)")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence} outside (0, 1)")
        if self.min_items < 2:
            raise ValueError(f"min_items={self.min_items} must be at least 2")


@dataclass(frozen=True, slots=True)
class GateConfig:
    """``default`` applies to every slice not named in ``slices``."""

    default: SliceGate
    slices: dict[str, SliceGate] = field(default_factory=dict)

    def for_slice(self, name: str) -> SliceGate:
        return self.slices.get(name, self.default)

    def check_slices(self, known: Iterable[str]) -> None:
        """Raise ValueError naming the first gated slice that is not in ``known``."""
        valid = sorted(known)
        for name in sorted(self.slices):
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown slice {name!r} in the gate thresholds; valid slices: "
                    f"{', '.join(valid) or '(none)'}{hint}"
                )


@dataclass(frozen=True, slots=True)
class SliceResult:
    slice: str
    n: int  # paired items
    unpaired: int  # items scored on one side only (excluded)
    score_base: float | None  # mean score, fraction
    score_variant: float | None
    se_variant: float | None  # s / √n
    delta: float | None  # mean(variant − base), fraction
    delta_se: float | None  # s(d) / √n
    delta_ci95: tuple[float, float] | None  # at 0.95, by ``ci_method``
    confidence: float  # the gate's confidence
    delta_ci: tuple[float, float] | None  # at ``confidence``, by ``ci_method``; decides
    ci_method: str  # CI_BOOTSTRAP (partial credit), CI_ENVELOPE (0/1 scores) or CI_NONE (n = 0)
    max_drop: float
    min_items: int
    flips_lost: int  # variant lower than base
    flips_gained: int  # variant higher than base
    binary: bool  # every score 0 or 1
    mcnemar_p: float | None  # exact two-sided; None for partial credit or no items
    mcnemar_p_holm: float | None
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class Scorecard:
    slices: tuple[SliceResult, ...]
    verdict: Verdict
    reason: str
    aggregate_base: float | None  # unweighted mean over slices with items; never decides
    aggregate_variant: float | None
    aggregate_delta: float | None
    seed: int
    resamples: int
    version: str = SCORECARD_VERSION


def scorecard(
    base: Scores,
    variant: Scores,
    gates: GateConfig,
    *,
    slices: Sequence[str] | None = None,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Scorecard:
    """Score every slice of ``slices`` (default: the union of both sides' slices), in order.

    A slice without paired items is INCONCLUSIVE, never a pass. Raises ValueError for a gate on
    an unknown slice, a score outside [0, 1], or fewer than 1,000 resamples.
    """
    if resamples < 1000:
        raise ValueError(f"resamples={resamples}: use at least 1,000 (default {RESAMPLES})")
    names = list(slices) if slices is not None else sorted(set(base) | set(variant))
    gates.check_slices(names)
    results = [
        _slice_result(
            name, base.get(name, {}), variant.get(name, {}), gates.for_slice(name), seed, resamples
        )
        for name in names
    ]
    results = _with_holm(results)
    verdict, reason = _overall(results)
    scored = [r for r in results if r.score_base is not None and r.score_variant is not None]
    agg_b = float(np.mean([r.score_base for r in scored])) if scored else None
    agg_v = float(np.mean([r.score_variant for r in scored])) if scored else None
    return Scorecard(
        slices=tuple(results),
        verdict=verdict,
        reason=reason,
        aggregate_base=agg_b,
        aggregate_variant=agg_v,
        aggregate_delta=agg_v - agg_b if agg_b is not None and agg_v is not None else None,
        seed=seed,
        resamples=resamples,
    )


def paired_bootstrap_means(d: NDArray[np.float64], rng: np.random.Generator, resamples: int) -> F64:
    """Means of ``resamples`` paired bootstrap resamples of the per-item differences ``d``.

    Drawing n items uniformly with replacement is the same as drawing the counts of each distinct
    value from Multinomial(n, frequencies), which is what is done (in blocks of ≤ 2²⁰ numbers).
    """
    values, counts = np.unique(d, return_counts=True)
    freqs = counts / d.size
    out = np.empty(resamples)
    block = max(1, 2**20 // values.size)
    for start in range(0, resamples, block):
        m = min(block, resamples - start)
        out[start : start + m] = rng.multinomial(d.size, freqs, size=m) @ values / d.size
    return out


def mcnemar_exact(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p: binomial test of ``lost`` vs Bin(lost + gained, 1/2); 1.0 at 0."""
    if lost + gained == 0:
        return 1.0
    from scipy import stats as sps

    return float(sps.binomtest(lost, lost + gained, 0.5).pvalue)


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """Upper end of the two-sided exact ``confidence`` interval of a rate from k of n items:
    the (1 + confidence)/2 quantile of Beta(k + 1, n − k); 1.0 when k = n."""
    if k >= n:
        return 1.0
    from scipy import stats as sps

    return float(sps.beta.ppf((1 + confidence) / 2, k + 1, n - k))


def exact_envelope(
    ci: tuple[float, float], lost: int, gained: int, n: int, confidence: float
) -> tuple[float, float]:
    """``ci`` widened to [g/n − U_l, U_g − l/n] where wider (U_k: ``clopper_pearson_upper``)."""
    lo = gained / n - clopper_pearson_upper(lost, n, confidence)
    hi = clopper_pearson_upper(gained, n, confidence) - lost / n
    return (min(ci[0], lo), max(ci[1], hi))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order: max_{j ≤ i} min(1, (m − j + 1) p_(j))."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _slice_result(
    name: str,
    base: Mapping[str, float | bool],
    variant: Mapping[str, float | bool],
    gate: SliceGate,
    seed: int,
    resamples: int,
) -> SliceResult:
    ids = sorted(set(base) & set(variant))
    b = _scores(name, base, ids)
    v = _scores(name, variant, ids)
    d = v - b
    binary = bool(np.all((b == 0) | (b == 1)) and np.all((v == 0) | (v == 1)))
    lost, gained = int(np.sum(d < 0)), int(np.sum(d > 0))
    ci95 = ci = None
    method = CI_NONE
    if ids:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        means = paired_bootstrap_means(d, rng, resamples)
        ci95, ci = _percentile_ci(means, 0.95), _percentile_ci(means, gate.confidence)
        method = CI_BOOTSTRAP
        if binary:
            ci95 = exact_envelope(ci95, lost, gained, len(ids), 0.95)
            ci = exact_envelope(ci, lost, gained, len(ids), gate.confidence)
            method = CI_ENVELOPE
    verdict, reason = _verdict(len(ids), ci, gate)
    return SliceResult(
        slice=name,
        n=len(ids),
        unpaired=len(set(base) ^ set(variant)),
        score_base=float(b.mean()) if ids else None,
        score_variant=float(v.mean()) if ids else None,
        se_variant=_se(v),
        delta=float(d.mean()) if ids else None,
        delta_se=_se(d),
        delta_ci95=ci95,
        confidence=gate.confidence,
        delta_ci=ci,
        ci_method=method,
        max_drop=gate.max_drop,
        min_items=gate.min_items,
        flips_lost=lost,
        flips_gained=gained,
        binary=binary and bool(ids),
        mcnemar_p=mcnemar_exact(lost, gained) if binary and ids else None,
        mcnemar_p_holm=None,
        verdict=verdict,
        reason=reason,
    )


def _scores(name: str, items: Mapping[str, float | bool], ids: list[str]) -> F64:
    x = np.array([float(items[i]) for i in ids], dtype=np.float64)
    bad = np.flatnonzero(~((x >= 0) & (x <= 1)))  # also catches NaN
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"slice {name!r} item {ids[i]!r}: score {x[i]} outside [0, 1]")
    return x


def _se(x: F64) -> float | None:
    return float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else None


def _percentile_ci(means: F64, confidence: float) -> tuple[float, float]:
    tail = 50 * (1 - confidence)
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def _verdict(n: int, ci: tuple[float, float] | None, gate: SliceGate) -> tuple[Verdict, str]:
    if n == 0 or ci is None:
        return Verdict.INCONCLUSIVE, "no paired items"
    if n < gate.min_items:
        return Verdict.INCONCLUSIVE, f"n={n} < {gate.min_items} items"
    lo, hi = ci
    bound, label = -gate.max_drop, f"{gate.confidence:.0%} CI"
    if hi < bound:
        return Verdict.FAIL, f"{label} upper bound {_pt(hi)} < {_pt(bound)} pt"
    if lo >= bound:
        return Verdict.PASS, f"{label} lower bound {_pt(lo)} ≥ {_pt(bound)} pt"
    return Verdict.INCONCLUSIVE, f"{label} [{_pt(lo)}, {_pt(hi)}] pt straddles {_pt(bound)} pt"


def _with_holm(results: list[SliceResult]) -> list[SliceResult]:
    tested = {i: r.mcnemar_p for i, r in enumerate(results) if r.mcnemar_p is not None}
    adjusted = dict(zip(tested, holm(list(tested.values())), strict=True))
    return [
        replace(r, mcnemar_p_holm=adjusted[i]) if i in adjusted else r
        for i, r in enumerate(results)
    ]


def _overall(results: list[SliceResult]) -> tuple[Verdict, str]:
    failed = [r.slice for r in results if r.verdict is Verdict.FAIL]
    unsure = [r.slice for r in results if r.verdict is Verdict.INCONCLUSIVE]
    if failed:
        return Verdict.FAIL, f"failed: {', '.join(failed)}"
    if not results:
        return Verdict.INCONCLUSIVE, "no slices scored"
    if unsure:
        return Verdict.INCONCLUSIVE, f"inconclusive: {', '.join(unsure)}"
    return Verdict.PASS, f"all {len(results)} slices pass"


_CI_METHODS = (CI_ENVELOPE, CI_BOOTSTRAP)  # the ones with an interval, in display order


def _pt(x: float) -> str:
    """A fraction as signed points with two decimals: -0.0234 → "-2.34"."""
    return f"{100 * x:+.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def format_scorecard(card: Scorecard) -> str:
    """A Markdown table, one row per slice (scores in %, Δ and CI in points), then the verdict."""
    lines = [
        "| slice | n | base | variant | Δ (pt) | 95% CI (pt) | flips −/+ | McNemar p "
        "| Holm p | verdict | why |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in card.slices:
        delta = "n/a" if r.delta is None else _pt(r.delta)
        ci = "n/a" if r.delta_ci95 is None else f"[{_pt(r.delta_ci95[0])}, {_pt(r.delta_ci95[1])}]"
        lines.append(
            f"| {r.slice} | {r.n} | {_pct(r.score_base)} | {_pct(r.score_variant)} | {delta} "
            f"| {ci} | {r.flips_lost}/{r.flips_gained} | {_p(r.mcnemar_p)} "
            f"| {_p(r.mcnemar_p_holm)} | {r.verdict} | {r.reason} |"
        )
    lines.append("")
    methods = {m: [r.slice for r in card.slices if r.ci_method == m] for m in _CI_METHODS}
    used = [f"{m} ({', '.join(names)})" for m, names in methods.items() if names]
    if used:
        lines.append(f"CI method: {'; '.join(used)}")
    lines.append(f"**Overall: {card.verdict}** ({card.reason})")
    if card.aggregate_delta is not None:
        lines.append(
            f"Aggregate (mean over slices, does not decide): {_pct(card.aggregate_base)} → "
            f"{_pct(card.aggregate_variant)} ({_pt(card.aggregate_delta)} pt)"
        )
    return "\n".join(lines)

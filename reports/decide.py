"""The recommendation: which cell to ship under the user's constraint (`decision:` config).

Each constraint judges each cell as within (True), ruled out (False) or unproven (None):

- status: only `ok` cells (measured and VALID) are candidates; failed, skipped and INVALID
  cells are ruled out with their reason.
- memory: `memory_bytes` (the weights file, or the measured peak: `decision.memory_of`)
  at most the budget. Not measured: ruled out.
- latency: each bounded series' p95 at most its bound. Where the p95 is absent (too few
  samples) the series' maximum bounds it: max within the bound proves it; otherwise unproven.
- quality (`max_slice_loss`): per slice, the paired CI of the change vs the baseline. Upper
  bound below -max on any slice: ruled out (a loss beyond the limit is significant). Lower
  bound at or above -max on every slice: within. Otherwise, or without an eval: unproven.
  The baseline is the reference: within by definition.
- kld (`max_kld`): mean KL divergence vs the baseline at most the bound; not measured: unproven.

Unproven cells stay candidates, named as such, unless `decision.require_proof` is set.

Scenarios (each applies only when its question can be asked):

- memory-bound (a memory budget is set): the best quality among cells within memory and quality.
- cost-bound (always): the lowest cost per 1M output tokens (highest tokens/s without a
  price) among cells within every constraint.
- quality-bound (a latency SLO is set): the best quality among cells within every constraint.

"Best quality" ranks by the lowest KLD when every candidate has one (a low-variance measure
over thousands of tokens), else by the highest worst-slice change, else, said so, by the most
bits per weight (a proxy, not a measurement). Ties go to less memory, then lower cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from harness.config.decision import DecisionConfig
from reports.table import Table

MIB = 2**20
Judgement = tuple[bool | None, str]  # within / ruled out / unproven, and why


@dataclass(frozen=True)
class Scenario:
    key: str  # memory_bound | cost_bound | quality_bound
    title: str
    question: str
    chosen: str | None = None
    why: str = ""  # one sentence
    candidates: tuple[str, ...] = ()
    ruled_out: tuple[tuple[str, str], ...] = ()  # (cell, "constraint: why")
    unproven: tuple[tuple[str, str], ...] = ()  # (cell, why) for the chosen and candidates
    binding: str = ""  # when no cell qualifies: which constraint decides that


@dataclass(frozen=True)
class Recommendation:
    decision: DecisionConfig
    scenarios: tuple[Scenario, ...]
    constraints: tuple[str, ...] = field(default=())  # the stated bounds, in words


def _mib(x: float) -> str:
    return f"{x / MIB:,.1f} MiB" if x < 10 * 2**30 else f"{x / 2**30:,.2f} GiB"


def _points(limit: float) -> str:
    n = f"{limit * 100:g}"
    return f"{n} point" if n == "1" else f"{n} points"


def _pt(x: float) -> str:
    return f"{x * 100:+.1f}".replace("-", "−")


def _status(row: pd.Series) -> Judgement:
    if row["status"] == "ok" and row["validity"] in ("VALID", ""):
        return True, ""
    why = str(row["reason"] or row["status"])
    return False, f"{row['status']}: {why}"[:200]


def _memory(row: pd.Series, d: DecisionConfig) -> Judgement:
    budget = d.memory_budget_bytes
    assert budget is not None
    value = float(row["memory_bytes"])
    what = "weights" if d.memory_of.value == "weights" else "measured peak"
    if math.isnan(value):
        return False, f"{what} not measured"
    if value > budget:
        return False, f"{what} {_mib(value)} over the {_mib(budget)} budget"
    return True, f"{what} {_mib(value)} within {_mib(budget)}"


def _latency(row: pd.Series, d: DecisionConfig) -> Judgement:
    verdict: bool | None = True
    notes = []
    for series in ("ttft", "itl", "e2e"):
        bound = getattr(d.latency_p95, f"{series}_s")
        if bound is None:
            continue
        p95, top = float(row[f"{series}_p95_s"]), float(row[f"{series}_max_s"])
        label = series.upper() if series != "e2e" else "end-to-end"
        if not math.isnan(p95):
            if p95 > bound:
                return False, f"{label} p95 {p95 * 1e3:.0f} ms over {bound * 1e3:.0f} ms"
            notes.append(f"{label} p95 {p95 * 1e3:.1f} ms")
        elif not math.isnan(top) and top <= bound:
            notes.append(f"{label} max {top * 1e3:.1f} ms (p95 needs more samples)")
        else:
            verdict = None
            notes.append(f"{label} p95 not measurable here (too few samples) and max above bound")
    return verdict, "; ".join(notes)


def _quality(row: pd.Series, d: DecisionConfig, slices: tuple[str, ...]) -> Judgement:
    limit = d.max_slice_loss
    assert limit is not None
    if row["role"] == "baseline":
        return True, "the baseline itself"
    measured = [s for s in slices if not math.isnan(float(row[f"delta:{s}"]))]
    if not measured:
        return None, "quality not measured (no eval for this cell)"
    worst_lo = min(measured, key=lambda s: float(row[f"delta_lo:{s}"]))
    for s in measured:
        hi = float(row[f"delta_hi:{s}"])
        if hi < -limit:
            lo, delta = float(row[f"delta_lo:{s}"]), float(row[f"delta:{s}"])
            return False, (
                f"{s} {_pt(delta)} points (CI {_pt(lo)} to {_pt(hi)}), a loss beyond "
                f"{_points(limit)}"
            )
    lo = float(row[f"delta_lo:{worst_lo}"])
    missing = [s for s in slices if s not in measured]
    if lo >= -limit and not missing:
        return True, f"every slice within {_points(limit)} (worst CI bound {_pt(lo)})"
    gap = f"; not measured: {', '.join(missing)}" if missing else ""
    delta, hi = float(row[f"delta:{worst_lo}"]), float(row[f"delta_hi:{worst_lo}"])
    return None, (
        f"not proven within {_points(limit)}: {worst_lo} {_pt(delta)} points "
        f"(CI {_pt(lo)} to {_pt(hi)}){gap}"
    )


def _kld(row: pd.Series, d: DecisionConfig) -> Judgement:
    assert d.max_kld is not None
    kld = float(row["kld"])
    if math.isnan(kld):
        return None, "KLD not measured"
    if kld > d.max_kld:
        return False, f"KLD {kld:.4f} over {d.max_kld:g}"
    return True, f"KLD {kld:.4f}"


Check = Callable[[pd.Series], Judgement]


def _checks(d: DecisionConfig, slices: tuple[str, ...]) -> dict[str, Check]:
    checks: dict[str, Check] = {"status": _status}
    if d.memory_budget_gib is not None:
        checks["memory"] = lambda r: _memory(r, d)
    lat = d.latency_p95
    if any(v is not None for v in (lat.ttft_s, lat.itl_s, lat.e2e_s)):
        checks["latency"] = lambda r: _latency(r, d)
    if d.max_slice_loss is not None:
        checks["quality"] = lambda r: _quality(r, d, slices)
    if d.max_kld is not None:
        checks["kld"] = lambda r: _kld(r, d)
    return checks


def _feasible(j: Judgement, require_proof: bool) -> bool:
    return j[0] is True or (j[0] is None and not require_proof)


def quality_key(frame: pd.DataFrame) -> tuple[str, Callable[[str], float]]:
    """How "best quality" is ranked among ``frame``'s rows (lower key is better)."""
    if len(frame) and frame["kld"].notna().all():
        return "lowest KLD vs the baseline", lambda n: float(frame.at[n, "kld"])
    if len(frame) and frame["worst_delta"].notna().all():
        return "best worst-slice change", lambda n: -float(frame.at[n, "worst_delta"])
    return (
        "most bits per weight (a proxy: quality was not measured)",
        lambda n: -float(frame.at[n, "bpw"]) if not math.isnan(frame.at[n, "bpw"]) else 0.0,
    )


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


SCENARIOS = {
    "memory_bound": (
        "Memory-bound",
        "the best quality that fits the memory budget",
        ("status", "memory", "quality", "kld"),
    ),
    "cost_bound": (
        "Throughput/cost-bound",
        "the lowest cost per token within every constraint",
        ("status", "memory", "latency", "quality", "kld"),
    ),
    "quality_bound": (
        "Quality-bound",
        "the best quality within the memory and latency budgets",
        ("status", "memory", "latency", "quality", "kld"),
    ),
}


def _applies(key: str, d: DecisionConfig) -> bool:
    lat = d.latency_p95
    if key == "memory_bound":
        return d.memory_budget_gib is not None
    if key == "quality_bound":
        return any(v is not None for v in (lat.ttft_s, lat.itl_s, lat.e2e_s))
    return True


def _objective(key: str, frame: pd.DataFrame) -> tuple[str, Callable[[str], tuple[float, ...]]]:
    def value(n: str, column: str, sign: float = 1.0) -> float:
        return _nan_last(sign * float(frame.at[n, column]))

    if key == "cost_bound":
        if frame["cost_1m"].notna().all():
            return "lowest cost per 1M output tokens", lambda n: (
                value(n, "cost_1m"),
                value(n, "memory_bytes"),
            )
        return "highest output tokens/s (no price recorded)", lambda n: (
            value(n, "tok_s", -1.0),
            value(n, "memory_bytes"),
        )
    label, quality = quality_key(frame)
    return label, lambda n: (quality(n), value(n, "memory_bytes"), value(n, "cost_1m"))


def _binding(
    judged: dict[str, dict[str, Judgement]], names: list[str], used: list[str], proof: bool
) -> str:
    """Which constraint, dropped alone, would let some cell through."""
    alive = [n for n in names if _feasible(judged[n]["status"], proof)]
    if not alive:
        return "no cell ran successfully (every cell failed, was skipped or is INVALID)"
    single = [
        c
        for c in used
        if c != "status"
        and any(all(_feasible(judged[n][o], proof) for o in used if o != c) for n in alive)
    ]
    if single:
        return " or ".join(single) + " (relaxing it alone would admit a cell)"
    return "the constraints jointly: " + ", ".join(c for c in used if c != "status")


def _first_failing(judged: dict[str, Judgement], used: list[str], proof: bool) -> str | None:
    """The first constraint ruling a cell out: only its reason is listed (a failed cell is not
    also 'over budget')."""
    return next((c for c in used if not _feasible(judged[c], proof)), None)


def scenario(key: str, table: Table, d: DecisionConfig) -> Scenario:
    title, question, wanted = SCENARIOS[key]
    frame = table.frame
    checks = _checks(d, table.slices)
    used = [c for c in wanted if c in checks]
    names = list(frame.index)
    judged = {n: {c: checks[c](frame.loc[n]) for c in used} for n in names}
    candidates = [n for n in names if all(_feasible(judged[n][c], d.require_proof) for c in used)]
    ruled = tuple(
        (n, f"{c}: {judged[n][c][1]}")
        for n in names
        if (c := _first_failing(judged[n], used, d.require_proof)) is not None
    )
    if not candidates:
        binding = _binding(judged, names, used, d.require_proof)
        why = f"No cell satisfies the constraints; binding: {binding}."
        return Scenario(key, title, question, None, why, (), ruled, (), binding)
    label, order = _objective(key, frame.loc[candidates])
    ranked = sorted(candidates, key=order)
    chosen = ranked[0]
    unproven = tuple(
        (n, f"{c}: {j[1]}") for n in ranked for c, j in judged[n].items() if j[0] is None
    )
    why = _sentence(key, chosen, ranked, frame, label, judged[chosen], table.currency)
    return Scenario(key, title, question, chosen, why, tuple(ranked), ruled, unproven)


def _sentence(
    key: str,
    chosen: str,
    ranked: list[str],
    frame: pd.DataFrame,
    label: str,
    judged: dict[str, Judgement],
    currency: str,
) -> str:
    row = frame.loc[chosen]
    among = f"among {len(ranked)} cell{'s' if len(ranked) != 1 else ''} within the constraints"
    if key == "cost_bound" and label.startswith("lowest cost"):
        lead = f"{chosen} has the {label}, {row['cost_1m']:#.4g} {currency}"
        if not math.isnan(row["cost_1m_lo"]):
            lead += f" (CI {row['cost_1m_lo']:#.4g}–{row['cost_1m_hi']:#.4g})"
        lead += f" at {row['tok_s']:.1f} tokens/s, {among}"
        tied = _tied(chosen, ranked, frame)
        if tied:
            lead += f"; statistically tied with {', '.join(tied)} (cost CIs overlap)"
    elif key == "cost_bound":
        lead = f"{chosen} has the {label}, {row['tok_s']:.1f} tokens/s, {among}"
    else:
        lead = f"{chosen} has the {label}: {_quality_value(row, label)}, {among}"
    caveats = [f"{c}: {why}" for c, (ok, why) in judged.items() if ok is None]
    text = lead + (f"; unproven: {'; '.join(caveats)}" if caveats else "")
    if row["unstable"]:  # the numbers stand, but a re-run may order the cells differently
        text += f"; its measurement is flagged unstable ({str(row['unstable'])[:120]})"
    return text + "."


def _quality_value(row: pd.Series, label: str) -> str:
    if label.startswith("lowest KLD"):
        return f"KLD {row['kld']:.4f} nats"
    if label.startswith("best worst-slice"):
        return f"worst slice {row['worst_slice'] or 'none'} {_pt(float(row['worst_delta']))} points"
    return f"{row['bpw']:.2f} bits per weight"


def _tied(chosen: str, ranked: list[str], frame: pd.DataFrame) -> list[str]:
    hi = float(frame.at[chosen, "cost_1m_hi"])
    if math.isnan(hi):
        return []
    return [n for n in ranked[1:] if float(frame.at[n, "cost_1m_lo"]) <= hi]


def describe(d: DecisionConfig) -> tuple[str, ...]:
    out = []
    if d.memory_budget_gib is not None:
        out.append(f"{d.memory_of.value} ≤ {_mib(d.memory_budget_bytes or 0)}")
    for series in ("ttft", "itl", "e2e"):
        bound = getattr(d.latency_p95, f"{series}_s")
        if bound is not None:
            out.append(f"{series} p95 ≤ {bound * 1e3:g} ms")
    if d.max_slice_loss is not None:
        out.append(f"loss ≤ {d.max_slice_loss * 100:g} points on any quality slice")
    if d.max_kld is not None:
        out.append(f"KLD ≤ {d.max_kld:g} nats")
    if d.require_proof:
        out.append("proof required (unproven counts as ruled out)")
    return tuple(out)


def recommend(table: Table, d: DecisionConfig) -> Recommendation:
    keys = [k for k in SCENARIOS if _applies(k, d)]
    return Recommendation(d, tuple(scenario(k, table, d) for k in keys), describe(d))

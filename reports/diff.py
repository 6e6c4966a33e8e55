"""Two sweeps compared cell by cell: what got worse or better beyond noise.

Cells are matched by their cell id (the axis values), so the same matrix measured last week and
today, or under runtime version A and B, lines up even though the cell keys differ. Each metric
is compared over the two runs' per-repetition values with `harness.compare`: Welch's
t-test, a bootstrap CI of the ratio, and `better` / `worse` only when p < 0.05 and the change is
at least 2 % (docs/metrics.md, "Comparing two cells or runs"). The nightly job reuses `diff`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.metrics import names
from harness.metrics.compare import Comparison, compare
from harness.tracking.store import RunData

# compared over their per-repetition values (rep.<name>), in the table's better direction
METRICS: tuple[names.Metric, ...] = (
    names.OUTPUT_THROUGHPUT,
    names.TTFT_MEAN,
    names.TPOT_MEAN,
    names.E2E_MEAN,
    names.MEAN_TREE_RSS,
)
Repetitions = Callable[[str, str], list[float]]  # (run id, metric) -> values


@dataclass(frozen=True)
class SweepDiff:
    before: str  # label of the older / reference sweep
    after: str
    rows: tuple[tuple[str, Comparison], ...] = ()  # (cell id, comparison)
    only_before: tuple[str, ...] = ()
    only_after: tuple[str, ...] = ()
    not_compared: tuple[tuple[str, str], ...] = field(default=())  # (cell id, why)

    @property
    def regressions(self) -> list[tuple[str, Comparison]]:
        return [(c, x) for c, x in self.rows if x.verdict == "worse"]

    @property
    def improvements(self) -> list[tuple[str, Comparison]]:
        return [(c, x) for c, x in self.rows if x.verdict == "better"]


def _measured(runs: Sequence[RunData]) -> dict[str, RunData]:
    return {
        r.tags.get(names.CELL_ID, r.name): r
        for r in runs
        if r.tags.get(names.STATUS) in ("ok", "invalid") and r.tags.get(names.SYNTHETIC) != "true"
    }


def diff(
    before: Sequence[RunData],
    after: Sequence[RunData],
    repetitions: Repetitions,
    labels: tuple[str, str],
) -> SweepDiff:
    a, b = _measured(before), _measured(after)
    rows: list[tuple[str, Comparison]] = []
    skipped: list[tuple[str, str]] = []
    for cell in (c for c in b if c in a):
        for m in METRICS:
            metric, higher = m.name, m.higher_is_better
            xa, xb = repetitions(a[cell].run_id, metric), repetitions(b[cell].run_id, metric)
            if not xa or not xb:
                skipped.append((cell, f"{metric}: no per-repetition values"))
                continue
            try:
                rows.append((cell, compare(xa, xb, metric, higher_is_better=higher)))
            except ValueError as e:
                skipped.append((cell, f"{metric}: {e}"))
    return SweepDiff(
        before=labels[0],
        after=labels[1],
        rows=tuple(rows),
        only_before=tuple(c for c in a if c not in b),
        only_after=tuple(c for c in b if c not in a),
        not_compared=tuple(skipped),
    )


def _ratio(c: Comparison) -> str:
    ci = f" ({c.ratio_ci95[0]:.3f}–{c.ratio_ci95[1]:.3f})" if c.ratio_ci95 else ""
    return f"{c.ratio:.3f}×{ci}"


def diff_markdown(d: SweepDiff) -> str:
    lines = [f"## Compared with {d.before}", ""]
    changed = d.regressions + d.improvements
    quiet = len(d.rows) - len(changed)
    lines.append(
        f"{len(d.regressions)} regression(s) and {len(d.improvements)} improvement(s) beyond "
        f"noise (Welch t p < 0.05 and ≥ 2 %); {quiet} comparison(s) without one."
    )
    if changed:
        lines += ["", "| cell | metric | before | after | after/before (95% CI) | p | verdict |"]
        lines.append("|---|---|---|---|---|---|---|")
        for cell, c in changed:
            p = "n/a" if c.p_value is None else f"{c.p_value:.2g}"
            lines.append(
                f"| {cell} | {c.metric} | {c.mean_a:.4g} | {c.mean_b:.4g} | {_ratio(c)} | {p} "
                f"| {c.verdict} |"
            )
    for label, cells in (("only in the earlier sweep", d.only_before), ("new", d.only_after)):
        if cells:
            lines += ["", f"Cells {label}: {', '.join(cells)}."]
    return "\n".join(lines)

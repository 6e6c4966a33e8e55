"""The report as Markdown: the recommendation first, then one row per cell."""

from __future__ import annotations

import pandas as pd

from reports.columns import ALL, Column, points, present
from reports.decide import Recommendation, Scenario
from reports.diff import SweepDiff, diff_markdown
from reports.table import Table


def _esc(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def scenario_lines(s: Scenario) -> list[str]:
    head = f"- **{s.title}** ({s.question}): "
    head += f"**{s.chosen}**. {s.why}" if s.chosen else f"**none**. {s.why}"
    lines = [head]
    if s.ruled_out:
        ruled = "; ".join(f"{name} ({why})" for name, why in s.ruled_out)
        lines.append(f"  - ruled out: {_esc(ruled)}")
    return lines


def recommendation(rec: Recommendation) -> str:
    d = rec.decision
    lines = [f"## Recommendation: decision `{d.name}`", ""]
    if d.description:
        lines.append(d.description)
        lines.append("")
    bounds = "; ".join(rec.constraints) or "none stated"
    lines.append(f"Constraints: {bounds}.")
    lines.append("")
    for s in rec.scenarios:
        lines.extend(scenario_lines(s))
    return "\n".join(lines)


def _cell(column: Column, row: pd.Series) -> str:
    value, ci = column.value(row), column.interval(row)
    return f"{value} ({ci})" if ci else value


def _quality(row: pd.Series, table: Table) -> str:
    if row["role"] == "baseline":
        return "baseline"
    if not table.slices or pd.isna(row["worst_delta"]):
        return "—"
    verdicts = [str(row[f"verdict:{s}"]) for s in table.slices if row[f"verdict:{s}"]]
    worst = f"{row['worst_slice']} {points(row['worst_delta'])}"
    return f"{worst}; {row['verdict'] or ', '.join(sorted(set(verdicts)))}"


def cells(table: Table) -> str:
    frame = table.frame
    columns = present(ALL, frame)
    header = ["cell", "status", *(c.header for c in columns)]
    if table.slices:
        header.append("worst slice (pt); verdict")
    header.append("flags")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in frame.iterrows():
        status = str(row["status"]) + (" (INVALID)" if row["validity"] == "INVALID" else "")
        values = [str(name), status, *(_cell(c, row) for c in columns)]
        if table.slices:
            values.append(_quality(row, table))
        note = str(row["reason"] or "") if row["status"] != "ok" else ""
        values.append(_esc("; ".join(x for x in (note, str(row["unstable"] or "")) if x))[:160])
        lines.append("| " + " | ".join(_esc(v) for v in values) + " |")
    return "\n".join(lines)


def render(
    title: str, rec: Recommendation, table: Table, html_path: str, diff: SweepDiff | None
) -> str:
    parts = [f"# {title}", "", recommendation(rec), "", "## Cells", "", cells(table)]
    parts += ["", f"Costs: {table.price_note}. Intervals are 95 % CIs."]
    if diff is not None:
        parts += ["", diff_markdown(diff)]
    parts += ["", f"Full report (tables, plots, metadata): {html_path}"]
    return "\n".join(parts) + "\n"

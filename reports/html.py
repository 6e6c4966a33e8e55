"""The report as one self-contained HTML file: inline CSS, plots as PNG data URIs, no script.

A value a run did not measure shows "—" with the run's reason as its tooltip, and again in
the "Absent, and why" list (tooltips need a mouse; the list does not).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from harness.tracking.store import RunData, SweepData
from reports.columns import ALL, Column, points, present
from reports.decide import Recommendation, Scenario
from reports.diff import SweepDiff, diff_markdown
from reports.plots import Plot, to_data_uri
from reports.table import Table

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#1d232a}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#555}.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;margin:10px 0}
.chosen{font-size:16px;font-weight:600}.none{color:#b42318;font-weight:600}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}td.l,th.l{text-align:left}
.ci{color:#666;font-size:11px;display:block}.absent{color:#999}
.PASS{background:#dff5e3}.FAIL{background:#fde2e1}.INCONCLUSIVE{background:#f3f3f3}
.baseline{background:#eef4ff}.bad{background:#fde2e1}
figure{margin:14px 0;max-width:900px}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:13px}.scroll{overflow-x:auto}
ul.ruled li{color:#444}code{background:#f6f8fa;padding:0 3px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _scenario(s: Scenario) -> str:
    head = (
        f'<div class="chosen">{_e(s.title)}: {_e(s.chosen)}</div>'
        if s.chosen
        else f'<div class="none">{_e(s.title)}: no cell qualifies</div>'
    )
    parts = [f'<div class="card" id="scenario-{s.key}">', head]
    parts.append(f'<div class="meta">{_e(s.question)}</div><p>{_e(s.why)}</p>')
    if s.candidates:
        parts.append(f"<div>Candidates, best first: {_e(', '.join(s.candidates))}</div>")
    if s.ruled_out:
        items = "".join(f"<li><b>{_e(n)}</b>: {_e(w)}</li>" for n, w in s.ruled_out)
        parts.append(f'<div>Ruled out:</div><ul class="ruled">{items}</ul>')
    return "".join(parts) + "</div>"


def _recommendation(rec: Recommendation) -> str:
    d = rec.decision
    bounds = "; ".join(rec.constraints) or "none stated"
    out = [f"<h2>Recommendation: decision <code>{_e(d.name)}</code></h2>"]
    if d.description:
        out.append(f"<p>{_e(d.description)}</p>")
    out.append(f"<p>Constraints: {_e(bounds)}.</p>")
    out.extend(_scenario(s) for s in rec.scenarios)
    return "".join(out)


def _td(column: Column, row: pd.Series, absent: dict[str, str]) -> str:
    value = column.value(row)
    if value == "—":
        why = absent.get(column.key, "not measured in this cell")
        return f'<td class="absent" title="{_e(why)}">—</td>'
    ci = column.interval(row)
    ci_html = f'<span class="ci">{_e(ci)}</span>' if ci else ""
    return f'<td data-col="{_e(column.key)}">{_e(value)}{ci_html}</td>'


def _slice_td(row: pd.Series, s: str) -> str:
    delta = points(row[f"delta:{s}"])
    if delta == "—":
        return '<td class="absent" title="not measured for this cell">—</td>'
    verdict = str(row[f"verdict:{s}"] or "")
    ci = f"{points(row[f'delta_lo:{s}'])}…{points(row[f'delta_hi:{s}'])}"
    return (
        f'<td class="{_e(verdict)}" data-col="delta:{_e(s)}">{_e(delta)}'
        f'<span class="ci">{_e(ci)} {_e(verdict)}</span></td>'
    )


def _cells(table: Table) -> str:
    frame = table.frame
    columns = present(ALL, frame)
    head = ['<th class="l">cell</th><th class="l">status</th>']
    head += [f"<th>{_e(c.header)}</th>" for c in columns]
    head += [f"<th>{_e(s)} Δ pt</th>" for s in table.slices]
    head.append('<th class="l">flags / reason</th>')
    rows = []
    for name, row in frame.iterrows():
        absent = table.absent.get(str(name), {})
        status = str(row["status"]) + (" INVALID" if row["validity"] == "INVALID" else "")
        css = "baseline" if row["role"] == "baseline" else ("bad" if row["status"] != "ok" else "")
        tds = [f'<td class="l"><b>{_e(name)}</b></td><td class="l">{_e(status)}</td>']
        tds += [_td(c, row, absent) for c in columns]
        tds += [_slice_td(row, s) for s in table.slices]
        note = "; ".join(str(x) for x in (row["reason"], row["flags"]) if x)
        tds.append(f'<td class="l">{_e(note[:300])}</td>')
        rows.append(f'<tr class="{css}" data-cell="{_e(name)}">{"".join(tds)}</tr>')
    return (
        f'<div class="scroll"><table id="cells"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f"<p class='meta'>Intervals under a value are 95 % CIs (throughput: Student t over "
        f"repetitions; p95: request-level bootstrap of the raw events; cost: the throughput "
        f"CI through the price; quality: the paired per-slice CI). Costs: "
        f"{_e(table.price_note)}.</p>"
    )


def _absent(table: Table) -> str:
    grouped: dict[tuple[str, str], list[str]] = {}
    shown = {c.key: c.header for c in present(ALL, table.frame)} | {c.key: c.header for c in ALL}
    for name, reasons in table.absent.items():
        for key, why in reasons.items():
            grouped.setdefault((shown.get(key, key), why), []).append(name)
    if not grouped:
        return ""
    items = "".join(
        f"<li><b>{_e(h)}</b> ({_e(', '.join(names))}): {_e(why)}</li>"
        for (h, why), names in sorted(grouped.items())
    )
    return f"<h2>Absent, and why</h2><ul>{items}</ul>"


def _plot(p: Plot) -> str:
    if p.png is None:
        caption = f"<figcaption><b>{_e(p.title)}</b>: {_e(p.caption)}</figcaption>"
        return f'<figure id="plot-{_e(p.key)}">{caption}</figure>'
    return (
        f'<figure id="plot-{_e(p.key)}"><img alt="{_e(p.title)}" src="{to_data_uri(p.png)}">'
        f"<figcaption><b>{_e(p.title)}</b>. {_e(p.caption)}</figcaption></figure>"
    )


PROVENANCE = (
    ("run", None),
    ("git commit", "git.commit"),
    ("dirty", "git.dirty"),
    ("runtime", "runtime.name"),
    ("CPU", "cpu.model"),
    ("GPU", "gpu.name"),
    ("driver", "gpu.driver"),
    ("CUDA", "gpu.cuda_driver"),
    ("python", "python.version"),
    ("file sha256", "artifact.sha256"),
    ("recipe", "artifact.recipe.op"),
    ("price", "price.per_hour"),
    ("price snapshot", "price.snapshot"),
)


def _provenance(names: Sequence[str], runs: Sequence[RunData]) -> str:
    head = "".join(f'<th class="l">{_e(h)}</th>' for h, _ in (("cell", None), *PROVENANCE))
    rows = []
    for name, run in zip(names, runs, strict=True):
        tags = run.tags
        versions = "; ".join(
            f"{k.removeprefix('runtime.')}={v}"
            for k, v in sorted(tags.items())
            if k.startswith("runtime.") and k != "runtime.name" and len(v) < 80
        )
        cells = [name, run.run_id] + [tags.get(t, "—") for _, t in PROVENANCE[1:]]
        cells[4] = f"{cells[4]} ({versions})" if versions else cells[4]
        cells[2] = cells[2][:12]
        cells[10] = cells[10][:16]
        rows.append("<tr>" + "".join(f'<td class="l">{_e(c)}</td>' for c in cells) + "</tr>")
    return (
        "<h2>Reproducibility</h2><p class='meta'>Each cell's MLflow run holds the resolved "
        "config (<code>config.yaml</code>), the environment, the raw events and resource "
        "samples; metric definitions: docs/metrics.md and docs/quality.md.</p>"
        f'<div class="scroll"><table id="provenance"><tr>{head}</tr>{"".join(rows)}</table></div>'
    )


def render(
    title: str,
    sweep: SweepData,
    store: str,
    rec: Recommendation,
    table: Table,
    plots: Sequence[Plot],
    runs: Sequence[RunData],
    diff: SweepDiff | None = None,
) -> str:
    meta = (
        f"sweep <code>{_e(sweep.name)}</code> id <code>{_e(sweep.sweep_id)}</code>, "
        f"parent run <code>{_e(sweep.run.run_id)}</code>, ended {_e(sweep.ended or 'not yet')}, "
        f"store {_e(store)}; {len(table.frame)} cells"
    )
    body = [f"<h1>{_e(title)}</h1><p class='meta'>{meta}</p>", _recommendation(rec)]
    body += ["<h2>Cells</h2>", _cells(table), "<h2>Plots</h2>", *(_plot(p) for p in plots)]
    if diff is not None:
        body.append(f"<h2>Compared with {_e(diff.before)}</h2><pre>{_e(diff_markdown(diff))}</pre>")
    body += [_absent(table), _provenance(list(table.frame.index), runs)]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )

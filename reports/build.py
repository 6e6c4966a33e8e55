"""A sweep's report end to end: read it from the store, decide, plot, write, attach.

Writes `report.html` (self-contained), `summary.md` and `cells.csv` into one folder and logs
all three under `report/` on the sweep's parent run.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from harness.config.decision import DecisionConfig
from harness.metrics import names
from harness.tracking.store import REPORT_DIR, RunData, SweepData, SweepStore
from reports import html, markdown, plots
from reports.decide import Recommendation, recommend
from reports.diff import SweepDiff, diff
from reports.latency import SeriesStats, from_events
from reports.table import Table
from reports.table import build as build_table

FILES = ("report.html", "summary.md", "cells.csv")
DECISION_TAG = "report.decision_config"  # the whole decision, so a later report can reuse it


@dataclass(frozen=True)
class Report:
    sweep: SweepData
    table: Table
    recommendation: Recommendation
    markdown: str
    files: tuple[Path, ...]  # report.html, summary.md, cells.csv
    diff: SweepDiff | None = None

    @property
    def html_path(self) -> Path:
        return self.files[0]


def _latency(store: SweepStore, runs: Sequence[RunData]) -> dict[str, dict[str, SeriesStats]]:
    out: dict[str, dict[str, SeriesStats]] = {}
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp:
        for run in runs:
            if run.tags.get(names.STATUS) not in ("ok", "invalid"):
                continue
            where = Path(tmp) / run.run_id
            if store.download(run.run_id, "events", where) is not None:
                out[run.run_id] = from_events(where)
    return out


def _plots(
    table: Table, decision: DecisionConfig, stats: Mapping[str, Mapping[str, SeriesStats]]
) -> list[plots.Plot]:
    frame = table.frame
    memory = "weights file" if decision.memory_of.value == "weights" else "measured peak memory"
    samples = {
        str(name): {k: s.samples for k, s in stats.get(str(run_id), {}).items()}
        for name, run_id in frame["run_id"].items()
        if str(run_id) in stats
    }
    return [
        plots.quality_vs_memory(frame, "memory_bytes", memory, decision.memory_budget_bytes),
        plots.throughput_vs_cost(frame),
        plots.slice_heatmap(frame, table.slices),
        plots.latency_distributions(samples),
        plots.memory_prediction(frame),
    ]


def build(
    store: SweepStore,
    sweep: SweepData,
    decision: DecisionConfig,
    out_dir: Path,
    against: SweepData | None = None,
    attach: bool = True,
) -> Report:
    real = [r for r in sweep.cells if r.tags.get(names.SYNTHETIC) != "true"]
    stats = _latency(store, real)
    table = build_table(real, stats, decision)
    rec = recommend(table, decision)
    compared = None
    if against is not None:
        labels = (
            f"sweep {against.name} ({against.sweep_id}, ended {against.ended})",
            f"sweep {sweep.name} ({sweep.sweep_id})",
        )
        compared = diff(against.cells, sweep.cells, store.repetitions, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(out_dir / f for f in FILES)
    title = f"Report: sweep {sweep.name} ({sweep.sweep_id})"
    synthetic = len(sweep.cells) - len(real)
    if synthetic:
        title += f", {synthetic} synthetic cell(s) left out"
    md = markdown.render(title, rec, table, str(paths[0].resolve()), compared)
    figures = _plots(table, decision, stats) if real else []
    page = html.render(title, sweep, store.describe(), rec, table, figures, real, compared)
    paths[0].write_text(page)
    paths[1].write_text(md)
    table.frame.to_csv(paths[2])
    if attach:
        config = OmegaConf.to_container(OmegaConf.structured(decision), enum_to_str=True)
        tags = {"report.decision": decision.name, DECISION_TAG: json.dumps(config)}
        tags |= {f"report.{s.key}": s.chosen or "none" for s in rec.scenarios}
        store.attach(sweep.run.run_id, paths, tags)
    return Report(sweep, table, rec, md, paths, compared)


__all__ = ["FILES", "REPORT_DIR", "Report", "build"]

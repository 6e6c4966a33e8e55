"""The report at a sweep's end: registered as the ``harness.sweep_end`` entry point
(pyproject.toml), called by the harness with the recorded sweep's id."""

from __future__ import annotations

from pathlib import Path

from harness.config.schema import HarnessConfig
from harness.tracking.store import SweepStore
from reports.build import build
from reports.markdown import recommendation


def report_sweep(cfg: HarnessConfig, sweep_id: str, out_dir: Path) -> tuple[str, Path]:
    """Build the sweep's report (HTML, Markdown, CSV) into ``out_dir/report`` and attach it to
    the sweep's parent run; the recommendation text and the HTML path."""
    store = SweepStore(cfg.tracking)
    built = build(store, store.find(sweep_id), cfg.decision, out_dir / "report")
    return recommendation(built.recommendation), built.html_path

"""What follows a sweep's end: its report, built by whichever package registered itself under
the ``harness.sweep_end`` entry-point group (this project's ``reports``), so the harness hands
the end over through one narrow call and never imports the package that builds reports."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from harness.config.schema import HarnessConfig
from harness.sweep.progress import Console

ENTRY_POINT_GROUP = "harness.sweep_end"


class SweepEndHook(Protocol):
    def __call__(self, cfg: HarnessConfig, sweep_id: str, out_dir: Path) -> tuple[str, Path]:
        """Report on the recorded sweep ``sweep_id`` into ``out_dir``: (what to print under
        the summary table, the main file written)."""


def sweep_ended(cfg: HarnessConfig, sweep_id: str, out_dir: Path, console: Console) -> None:
    """Run every sweep-end hook; one that fails is a warning, since every cell is recorded."""
    if not cfg.run.report:
        return
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            hook: SweepEndHook = ep.load()
            text, path = hook(cfg, sweep_id, out_dir)
        except Exception as e:  # never lose a finished sweep to its report
            console.warn(f"no {ep.name}: {type(e).__name__}: {e}")
            continue
        console.report(text, path)

"""The parent's side of one sweep: it opens (or, on resume, reopens) the sweep's parent run,
records skipped cells, finds cells already finished, then collects every cell's outcome and
closes the sweep with its summary; the exit status is what ``finish`` returns.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.measure.metadata import environment
from harness.metrics.equivalence import differences
from harness.plan.cell import Cell
from harness.plan.matrix import sweep_id
from harness.results.result import CellResult, Outcome, Status, write_json_atomic
from harness.sweep.progress import Console
from harness.tracking.record import cell_record, skipped_result, sweep_record
from harness.tracking.sink import FAILED, FINISHED, KILLED, ResultSink
from runners import get_runner

# Cells that share these axes are meant to be comparable: their settings must match.
COMPARABLE = ("model", "workload", "hardware")


class Sweep:
    """The parent's side of one sweep: plan, resume, progress, summary, exit status."""

    def __init__(self, name: str, cells: list[Cell], sink: ResultSink, console: Console) -> None:
        self.name = name
        self.cells = cells
        self.sink = sink
        self.console = console
        self.id = sweep_id(name, [c.key for c in cells])
        self.outcomes: dict[str, Outcome] = {}
        self.env: dict[str, Any] = {}
        self.parent_id = ""

    def start(self, force: bool) -> list[Cell]:
        """Open the parent run, record skips, find finished cells; the cells left to run."""
        self.env = environment()
        self.parent_id = self.sink.open_sweep(
            self.id, sweep_record(self.id, self.name, self.cells, self.env)
        )
        done = {} if force else self.sink.finished_cells([c.key for c in self.cells])
        pending = []
        for cell in self.cells:
            if cell.key in done:
                status = Status.skipped if cell.skip else Status.cached
                run_id, metrics, settings = done[cell.key]
                synthetic = get_runner(cell.config.runtime.name).capabilities.synthetic
                self.outcomes[cell.key] = Outcome(
                    cell.cell_id,
                    cell.key,
                    status,
                    cell.skip or "",
                    run_id,
                    metrics,
                    0.0,
                    synthetic,
                    settings=settings,
                )
            elif cell.skip:
                self._log_skip(cell)
            else:
                pending.append(cell)
        title = f"{self.name} ({self.id})"
        known = list(self.outcomes.values())
        self.console.plan(title, len(self.cells), known, pending, self.sink.describe())
        return pending

    def _log_skip(self, cell: Cell) -> None:
        record = cell_record(cell, skipped_result(cell), self.env, self.id, self.name)
        run_id = self.sink.log_run(record, self.parent_id, FINISHED)
        self.outcomes[cell.key] = Outcome(
            cell.cell_id, cell.key, Status.skipped, cell.skip or "", run_id=run_id
        )

    def record(self, cell: Cell, outcome: Outcome) -> None:
        self.outcomes[cell.key] = outcome
        self.console.finished(outcome)

    def equivalence_warnings(self) -> list[str]:
        """Cells meant to be comparable (same model, workload and hardware) whose effective
        generation settings differ, e.g. one runtime applies a chat template."""
        rows = []
        for cell in self.cells:
            outcome = self.outcomes.get(cell.key)
            if outcome is not None and outcome.settings:
                group = "/".join(cell.choices.get(a, "?") for a in COMPARABLE)
                rows.append((cell.cell_id, group, outcome.settings))
        return differences(rows)

    def failed(self, cell: Cell, error: str) -> Outcome:
        """A job that raised instead of returning an outcome: still recorded as a failed run."""
        result = CellResult(status=Status.failed, reason=error[:2000])
        record = cell_record(cell, result, self.env, self.id, self.name)
        run_id = self.sink.log_run(record, self.parent_id, FAILED)
        return Outcome(cell.cell_id, cell.key, Status.failed, error, run_id)

    def abort(self, error: BaseException) -> None:
        """End the parent run when the sweep itself stops: KILLED on an interruption (SIGINT,
        SIGTERM), FAILED on anything else (a tracking failure), with the reason as a tag.
        Best effort: a store that just failed may refuse this too; the next resume of the same
        sweep reopens the run and marks its stale children KILLED."""
        if not self.parent_id:
            return
        status = KILLED if isinstance(error, KeyboardInterrupt) else FAILED
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        done = sum(1 for o in self.outcomes.values())
        tags = {"harness.end_reason": f"{reason} ({done} of {len(self.cells)} cells recorded)"}
        with contextlib.suppress(Exception):
            self.sink.close_sweep(self.parent_id, status, [], tags)

    def finish(self, out_dir: Path) -> int:
        """Summary table, cells.json and summary.md on the parent run; 1 if any cell failed."""
        ordered = [self.outcomes[c.key] for c in self.cells if c.key in self.outcomes]
        summary = self.console.summary(ordered)
        warnings = self.equivalence_warnings()
        for line in warnings:
            self.console.warn(line)
        if warnings:
            summary += "\n\n" + "\n".join(f"- warning: {w}" for w in warnings)
        out_dir.mkdir(parents=True, exist_ok=True)
        cells_file, summary_file = out_dir / "cells.json", out_dir / "summary.md"
        write_json_atomic(cells_file, [asdict(o) for o in ordered])
        summary_file.write_text(summary + "\n")
        failed = any(o.status is Status.failed for o in ordered)
        incomplete = len(ordered) < len(self.cells)
        status = FAILED if failed or incomplete else FINISHED
        tags = {"harness.equivalence": "; ".join(warnings) if warnings else "equivalent"}
        self.sink.close_sweep(self.parent_id, status, [cells_file, summary_file], tags)
        return 1 if failed or incomplete else 0

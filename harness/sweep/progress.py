"""What the user sees while a sweep runs: one line per cell with ETA, then the table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from harness.plan.cell import Cell
from harness.results.result import Outcome, Status
from harness.sweep.summary import summary_table
from harness.tracking.sink import redact


def _duration(s: float) -> str:
    s = round(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Console:
    def __init__(self, out: TextIO | None = None, table_out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.table_out = table_out or sys.stdout
        self.to_run = 0
        self.ran: list[float] = []

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def plan(
        self,
        title: str,
        cells: int,
        known: Sequence[Outcome],
        pending: Sequence[Cell],
        where: str,
    ) -> None:
        """``title``: the sweep's name and id; ``known``: outcomes decided before running
        (cached and skipped cells); ``where``: the tracking store."""
        statuses = [o.status for o in known]
        self.to_run = len(pending)
        self._print(
            f"harness: sweep {title}: {cells} cells, "
            f"{len(pending)} to run, {statuses.count(Status.cached)} already done, "
            f"{statuses.count(Status.skipped)} skipped -> {redact(where)}"
        )
        for o in known:
            if o.status is Status.skipped:
                self._print(f"  skipped {o.cell_id}: {o.reason}")

    def warn(self, line: str) -> None:
        self._print(f"harness: warning: {line}")

    def started(self, cell: Cell) -> None:
        self._print(f"[{len(self.ran) + 1}/{self.to_run}] running {cell.cell_id}")

    def finished(self, outcome: Outcome) -> None:
        self.ran.append(outcome.duration_s)
        left = self.to_run - len(self.ran)
        eta = sum(self.ran) / len(self.ran) * left
        tps = outcome.metrics.get("output_throughput_tok_s")
        detail = f"{tps:.1f} tok/s" if tps is not None else outcome.reason[:160]
        self._print(
            f"[{len(self.ran)}/{self.to_run}] {outcome.status.value} {outcome.cell_id}: "
            f"{detail} ({_duration(outcome.duration_s)}; ETA {_duration(eta)})"
        )

    def report(self, recommendation: str, html: Path) -> None:
        print(f"\n{recommendation}\n\nreport: {html.resolve()}", file=self.table_out, flush=True)

    def summary(self, outcomes: Sequence[Outcome]) -> str:
        table = summary_table(outcomes)
        print("\n" + table, file=self.table_out, flush=True)
        return table

"""Run cells in fresh worker processes and record every one of them.

``Sweep`` is the parent's view: it opens (or, on resume, reopens) the sweep's parent run,
records skipped cells, finds cells already finished, then collects outcomes and prints the
summary. ``execute_cell`` runs one cell: artifact (cached or built by a ``prepare`` worker),
measurement in a ``run`` worker, then one child run in the sink. A failing cell becomes a
FAILED run with its error's last lines; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness import worker
from harness.artifacts.cache import ArtifactCache
from harness.artifacts.quantize import describe
from harness.config.schema import to_container
from harness.feasibility.verdict import with_memory
from harness.measure.metadata import environment
from harness.metrics.equivalence import differences
from harness.plan.cells import source_of, steps_of
from harness.plan.interpreter import executable
from harness.plan.matrix import Cell, sweep_id
from harness.quality.evaluate import BASELINE, EVAL_DIR, VARIANT, EvalTask
from harness.quality.gate import compare, inconclusive
from harness.quality.reference import reference_path
from harness.results.result import CellResult, Outcome, Status, load_result, write_json_atomic
from harness.sweep.process import ProcessResult, run_process
from harness.sweep.progress import Console
from harness.tracking.record import cell_record, skipped_result, sweep_record
from harness.tracking.sink import FAILED, FINISHED, BaselineRun, ResultSink
from runners import get_runner

MEASURED = (Status.ok, Status.invalid)
# Cells that share these axes are meant to be comparable: their settings must match.
COMPARABLE = ("model", "workload", "hardware")


# Written by a runner that launches a server in its own process group; read here so that a
# worker killed at its deadline, or crashed, cannot leave the server running.
SERVER_PGID_FILE = "server.pgid"
BASELINE_DIR = "baseline"  # the baseline run's eval files, fetched for the scorecard


def _worker(phase: str, cell_dir: Path, timeout_s: float, python: str | None) -> ProcessResult:
    argv = [executable(python), "-m", "harness.worker", phase, str(cell_dir)]
    try:
        return run_process(argv, cell_dir / f"{phase}.log", timeout_s)
    finally:
        _reap_servers(cell_dir)


def _reap_servers(cell_dir: Path) -> None:
    """Kill the process group of any server the worker started and did not stop itself."""
    path = cell_dir / SERVER_PGID_FILE
    if not path.is_file():
        return
    with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
        os.killpg(int(path.read_text().strip()), signal.SIGKILL)
    path.unlink(missing_ok=True)


def _failure(pr: ProcessResult, cell_dir: Path, phase: str, timeout_s: float) -> CellResult:
    """The worker's own failed result when it wrote one, else what the exit tells."""
    path = cell_dir / worker.RESULT_FILE
    if path.is_file():
        return load_result(path)
    where = "artifact preparation" if phase == "prepare" else "measurement"
    return CellResult(
        status=Status.failed,
        reason=f"{where} worker {pr.describe(timeout_s)}",
        error=pr.log_tail,
    )


def _eval_task(
    cell: Cell, cell_dir: Path, sink: ResultSink
) -> tuple[EvalTask | None, BaselineRun | None]:
    """This cell's role in the quality gate and, for a variant, its baseline's finished run
    (fetched from the tracking store, so an earlier sweep's baseline works the same way)."""
    cfg = cell.config
    if not cfg.eval.enabled:
        return None, None
    if cell.baseline_key is None or cell.baseline_key == cell.key:
        return EvalTask(BASELINE), None
    base = sink.fetch_baseline(cell.baseline_key, cell_dir / BASELINE_DIR)
    if base is None:
        why = f"the baseline cell {cell.baseline_key} has no finished run (it failed or never ran)"
        return EvalTask(VARIANT, reference_missing=why), None
    ref = base.tags.get("quality.reference_key")
    if ref is None:
        detail = base.tags.get("absent.fidelity.kld_mean", "")
        why = "the baseline run has no reference logits" + (f" ({detail})" if detail else "")
        return EvalTask(VARIANT, reference_missing=why), base
    path = reference_path(Path(cfg.run.cache_dir), ref)
    return EvalTask(VARIANT, reference_dir=str(path)), base


def _gate(
    cell: Cell, cell_dir: Path, result: CellResult, task: EvalTask, base: BaselineRun | None
) -> CellResult:
    """A variant's paired scorecard against its baseline, added to its result."""
    if task.role == BASELINE:
        return result
    if base is None:
        gated = inconclusive(task.reference_missing or "no baseline run")
    else:
        try:
            gated, _ = compare(cell.config.eval, base.eval_dir, cell_dir, result.absent)
        except Exception as e:  # a broken baseline file must not lose this cell's numbers
            gated = inconclusive(f"scorecard failed: {type(e).__name__}: {e}")
        gated.tags["quality.baseline_run_id"] = base.run_id
    gated.tags["quality.baseline_cell_key"] = cell.baseline_key or ""
    return replace(
        result,
        metrics={**result.metrics, **gated.metrics},
        tags={**result.tags, **gated.tags},
        flags=result.flags + gated.flags,
    )


def _artifact(cell: Cell, cell_dir: Path, task: EvalTask | None) -> CellResult | None:
    """Write artifact.json from the cache, or build it in a prepare worker; a failure result
    when that fails."""
    cfg = cell.config
    source = source_of(cfg)
    steps = steps_of(cfg, source)
    spec = {
        "cell_id": cell.cell_id,
        "cell_key": cell.key,
        "config": to_container(cfg),
        "source": str(source.path),
        "steps": [asdict(s) for s in steps],
        "eval": asdict(task) if task is not None else None,
    }
    write_json_atomic(cell_dir / worker.CELL_FILE, spec)
    (cell_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    info = (
        ArtifactCache(Path(cfg.run.cache_dir)).lookup(steps[-1].key)
        if steps
        else describe(source.path, None, None, source.sha256, source.table)
    )
    if info is not None:
        write_json_atomic(cell_dir / worker.ARTIFACT_FILE, info)
        return None
    pr = _worker("prepare", cell_dir, cfg.run.prepare_timeout_s, cfg.runtime.python)
    if pr.returncode != 0:
        return _failure(pr, cell_dir, "prepare", cfg.run.prepare_timeout_s)
    return None


def _measure(cell: Cell, cell_dir: Path) -> CellResult:
    timeout = cell.config.run.timeout_s
    pr = _worker("run", cell_dir, timeout, cell.config.runtime.python)
    path = cell_dir / worker.RESULT_FILE
    if not path.is_file():
        return _failure(pr, cell_dir, "run", timeout)
    result = load_result(path)
    if pr.returncode != 0 and result.status in MEASURED:
        note = f"worker {pr.describe(timeout)} after writing its result"
        result = replace(result, reason="; ".join(x for x in (result.reason, note) if x))
    return result


def execute_cell(
    cell: Cell, cell_dir: Path, sink: ResultSink, parent_id: str, sweep: tuple[str, str]
) -> Outcome:
    """Run one cell end to end and log it; never raises for a failure of the cell itself."""
    t0 = time.perf_counter()
    cell_dir.mkdir(parents=True, exist_ok=True)
    stale = (worker.RESULT_FILE, worker.ARTIFACT_FILE, worker.ENV_FILE, worker.RESOURCES_FILE)
    for name in stale:
        (cell_dir / name).unlink(missing_ok=True)
    for folder in (worker.EVENTS_FILE, EVAL_DIR, BASELINE_DIR):
        shutil.rmtree(cell_dir / folder, ignore_errors=True)
    if cell.blocked:
        result = CellResult(status=Status.failed, reason=cell.blocked)
    else:
        task, base = _eval_task(cell, cell_dir, sink)
        result = _artifact(cell, cell_dir, task) or _measure(cell, cell_dir)
        if task is not None and result.status in MEASURED:
            result = _gate(cell, cell_dir, result, task, base)
        result = with_memory(cell, result, cell_dir / worker.ARTIFACT_FILE)
    env_file = cell_dir / worker.ENV_FILE
    env = json.loads(env_file.read_text()) if env_file.is_file() else environment()
    record = cell_record(cell, result, env, *sweep)
    files = (
        "cell.json",
        "config.yaml",
        "result.json",
        worker.EVENTS_FILE,
        worker.ENV_FILE,
        worker.RESOURCES_FILE,
        EVAL_DIR,
    )
    logs = ("prepare.log", "run.log", "server.log")
    record.files = [cell_dir / f for f in (*files, *logs)]
    status = FINISHED if result.status in MEASURED else FAILED
    run_id = sink.log_run(record, parent_id, status)
    return Outcome(
        cell_id=cell.cell_id,
        key=cell.key,
        status=result.status,
        reason=result.reason,
        run_id=run_id,
        metrics=result.metrics,
        duration_s=time.perf_counter() - t0,
        synthetic=get_runner(cell.config.runtime.name).capabilities.synthetic,
        flags=tuple(result.flags),
        settings=result.settings,
        verdict=_verdict(result),
    )


def _verdict(result: CellResult) -> str:
    if result.tags.get("quality.role") == BASELINE:
        return "baseline"
    return result.tags.get("quality.verdict", "")


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
        self.console.plan(self, pending)
        return pending

    def _log_skip(self, cell: Cell) -> None:
        record = cell_record(cell, skipped_result(cell), self.env, self.id, self.name)
        run_id = self.sink.log_run(record, self.parent_id, FINISHED)
        self.outcomes[cell.key] = Outcome(
            cell.cell_id, cell.key, Status.skipped, cell.skip or "", run_id=run_id
        )

    def record(self, cell: Cell, outcome: Outcome) -> None:
        self.outcomes[cell.key] = outcome
        self.console.finished(self, outcome)

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

"""One cell end to end, in four steps: artifact (from the cache, or built by a ``prepare``
worker), measure (a ``run`` worker), gate (a variant's paired scorecard against its baseline)
and record (one child run in the tracking store). Every step works from the planned ``Cell``;
nothing is planned again here. A failing cell becomes a FAILED run with its error's last
lines; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from omegaconf import OmegaConf

from harness.artifacts.cache import ArtifactCache
from harness.artifacts.hub import HubUnavailable, download
from harness.artifacts.quantize import describe
from harness.config.convert import to_container
from harness.config.errors import UserError
from harness.feasibility.verdict import with_memory
from harness.measure.metadata import environment
from harness.plan.cell import Cell
from harness.plan.interpreter import executable
from harness.quality.evaluate import BASELINE, EVAL_DIR, VARIANT, EvalTask
from harness.quality.gate import compare, inconclusive
from harness.quality.reference import reference_path
from harness.results.cell_dir import (
    ARTIFACT_FILE,
    CELL_FILE,
    CONFIG_FILE,
    ENV_FILE,
    EVENTS_FILE,
    LOGS,
    RESOURCES_FILE,
    RESULT_FILE,
    SERVER_PGID_FILE,
)
from harness.results.result import CellResult, Outcome, Status, load_result, write_json_atomic
from harness.sweep.process import ProcessResult, run_process
from harness.tracking.record import cell_record
from harness.tracking.sink import FAILED, FINISHED, BaselineRun, ResultSink
from runners import get_runner

MEASURED = (Status.ok, Status.invalid)
BASELINE_DIR = "baseline"  # the baseline run's eval files, fetched for the scorecard
UPLOADED = (CELL_FILE, CONFIG_FILE, RESULT_FILE, EVENTS_FILE, ENV_FILE, RESOURCES_FILE, EVAL_DIR)


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
    path = cell_dir / RESULT_FILE
    if path.is_file():
        return load_result(path)
    where = "artifact preparation" if phase == "prepare" else "measurement"
    return CellResult(
        status=Status.failed,
        reason=f"{where} worker {pr.describe(timeout_s)}",
        error=pr.log_tail,
    )


def _clean(cell_dir: Path) -> None:
    """A rerun of the cell in the same directory starts from nothing the last one left."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT_FILE, ARTIFACT_FILE, ENV_FILE, RESOURCES_FILE):
        (cell_dir / name).unlink(missing_ok=True)
    for folder in (EVENTS_FILE, EVAL_DIR, BASELINE_DIR):
        shutil.rmtree(cell_dir / folder, ignore_errors=True)


def eval_task(
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


def _note(message: str) -> None:
    print(f"harness: note: {message}", file=sys.stderr, flush=True)


def prepare_artifact(cell: Cell, cell_dir: Path, task: EvalTask | None) -> CellResult | None:
    """Step 1: write the worker's instructions and artifact.json, from the cache or built in a
    prepare worker; a failed result when that fails."""
    cfg, source = cell.config, cell.source
    assert source is not None, "a cell without a source is never executed"
    spec = {
        "cell_id": cell.cell_id,
        "cell_key": cell.key,
        "config": to_container(cfg),
        "source": str(source.path),
        "steps": [asdict(s) for s in cell.steps],
        "eval": asdict(task) if task is not None else None,
    }
    write_json_atomic(cell_dir / CELL_FILE, spec)
    (cell_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    if source.hub is not None and not source.hub.on_disk():
        try:  # once per checkpoint: a later cell finds the files in the Hub cache
            download(source.hub, source.where)
        except (HubUnavailable, UserError) as e:
            return CellResult(status=Status.failed, reason=str(e))
    info = (
        ArtifactCache(Path(cfg.run.cache_dir)).lookup_verified(cell.steps[-1].key, _note)
        if cell.steps
        else describe(source.path, None, None, source.sha256, source.table)
    )
    if info is not None:
        write_json_atomic(cell_dir / ARTIFACT_FILE, info)
        return None
    pr = _worker("prepare", cell_dir, cfg.run.prepare_timeout_s, cfg.runtime.python)
    if pr.returncode != 0:
        return _failure(pr, cell_dir, "prepare", cfg.run.prepare_timeout_s)
    return None


def measure(cell: Cell, cell_dir: Path) -> CellResult:
    """Step 2: the measurement worker, and its result (or why there is none)."""
    timeout = cell.config.run.timeout_s
    pr = _worker("run", cell_dir, timeout, cell.config.runtime.python)
    path = cell_dir / RESULT_FILE
    if not path.is_file():
        return _failure(pr, cell_dir, "run", timeout)
    result = load_result(path)
    if pr.returncode != 0 and result.status in MEASURED:
        note = f"worker {pr.describe(timeout)} after writing its result"
        result = replace(result, reason="; ".join(x for x in (result.reason, note) if x))
    return result


def gate(
    cell: Cell, cell_dir: Path, result: CellResult, task: EvalTask, base: BaselineRun | None
) -> CellResult:
    """Step 3: a variant's paired scorecard against its baseline, added to its result."""
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


def record(
    cell: Cell,
    cell_dir: Path,
    result: CellResult,
    sink: ResultSink,
    parent: tuple[str, str, str],
    seconds: float,
) -> Outcome:
    """Step 4: one child run under the sweep's parent (``parent``: run id, sweep id, name)."""
    env_file = cell_dir / ENV_FILE
    env = json.loads(env_file.read_text()) if env_file.is_file() else environment()
    parent_id, sweep_id, sweep_name = parent
    run = cell_record(cell, result, env, sweep_id, sweep_name)
    run.files = [cell_dir / f for f in (*UPLOADED, *LOGS)]
    status = FINISHED if result.status in MEASURED else FAILED
    run_id = sink.log_run(run, parent_id, status)
    return Outcome(
        cell_id=cell.cell_id,
        key=cell.key,
        status=result.status,
        reason=result.reason,
        run_id=run_id,
        metrics=result.metrics,
        duration_s=seconds,
        synthetic=get_runner(cell.config.runtime.name).capabilities.synthetic,
        flags=tuple(result.flags),
        settings=result.settings,
        verdict=_verdict(result),
    )


def _verdict(result: CellResult) -> str:
    if result.tags.get("quality.role") == BASELINE:
        return "baseline"
    return result.tags.get("quality.verdict", "")


def execute_cell(
    cell: Cell, cell_dir: Path, sink: ResultSink, parent: tuple[str, str, str]
) -> Outcome:
    """Run one planned cell end to end and record it; never raises for a failure of the cell
    itself."""
    with sink.claim(cell.key) as done:
        if done is not None and not cell.config.run.force:
            run_id, metrics, settings = done  # a concurrent sweep ran it while this one waited
            synthetic = get_runner(cell.config.runtime.name).capabilities.synthetic
            why = "finished by a concurrent sweep on the same store"
            return Outcome(
                cell.cell_id, cell.key, Status.cached, why, run_id, metrics, 0.0, synthetic,
                settings=settings,
            )  # fmt: skip
        return _execute(cell, cell_dir, sink, parent)


def _execute(cell: Cell, cell_dir: Path, sink: ResultSink, parent: tuple[str, str, str]) -> Outcome:
    t0 = time.perf_counter()
    _clean(cell_dir)
    if cell.blocked:
        result = CellResult(status=Status.failed, reason=cell.blocked)
    else:
        task, base = eval_task(cell, cell_dir, sink)
        result = prepare_artifact(cell, cell_dir, task) or measure(cell, cell_dir)
        if task is not None and result.status in MEASURED:
            result = gate(cell, cell_dir, result, task, base)
        result = with_memory(cell.config, cell.planned, result, cell_dir / ARTIFACT_FILE)
    return record(cell, cell_dir, result, sink, parent, time.perf_counter() - t0)

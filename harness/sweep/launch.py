"""Glue between Hydra and the sweep, for both ways a cell can start.

Sweep (``+sweep=NAME`` or ``-m``): the HarnessSweeper composes every job in the parent, plans
every cell once, writes each planned cell into the sweep's directory, opens the parent run,
then hands the cells still to run to whatever Hydra launcher is configured (local by default;
submitit for a cluster); each job carries its planned cell's file and the sweep's identity as
``run.*`` overrides and runs exactly that plan. Single run: the task plans its one cell and
runs it as a sweep of one. Hydra discards what a task or a sweeper returns, so the exit status
of one invocation is kept by its ``HarnessTask``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from harness.config.compose import compose_jobs
from harness.config.errors import UserError
from harness.config.hydra_errors import one_line
from harness.feasibility.footprint import NO_FIT
from harness.plan import cell as planned
from harness.plan.cell import Cell
from harness.plan.cells import plan_cell
from harness.plan.matrix import expand
from harness.plan.table import render, title_of
from harness.results.result import Outcome
from harness.sweep.baselines import attach
from harness.sweep.execute import execute_cell
from harness.sweep.orchestrator import Sweep
from harness.sweep.progress import Console
from harness.sweep.report_hook import sweep_ended
from harness.tracking.sink import MlflowSink, TrackingError

_INTERNAL = ("run.cell_file=", "run.parent_run_id=", "run.sweep_id=", "run.sweep_name=")
PLANNED_DIR = "cells"  # in the sweep's directory: one planned cell per job


@dataclass(frozen=True)
class JobFailed:
    """What a sweep job returns when it could not run its cell: Hydra then reports the job as
    completed (no "Error executing job" on stderr) and the sweeper records the cell failed."""

    error: str
    tracking: bool = False  # the tracking store failed: the sweep stops (exit 3)


class HarnessTask:
    """The Hydra task of one ``python -m harness`` invocation, and how it ended: the exit
    status (a sweep's comes from the sweeper, which Hydra hands this task) and a user error
    caught where Hydra would print its own report."""

    def __init__(self) -> None:
        self.exit_code = 0
        self.error: UserError | None = None

    def __call__(self, cfg: DictConfig) -> Outcome | JobFailed | None:
        if OmegaConf.select(cfg, "run.cell_file"):
            return run_job(cfg)
        try:
            self.exit_code = run_single(cfg)
        except UserError as e:
            self.error = e  # raising here would make Hydra print "Error executing job"
        return None

    def sweep_ended(self, code: int) -> None:
        self.exit_code = code


def _cell_overrides(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(_INTERNAL)]


def _sweep_name(config: DictConfig) -> str:
    choices = config.hydra.runtime.choices
    return str(choices.get("sweep") or "multirun")


def plan_sweep(config: DictConfig, context: HydraContext, jobs: list[list[str]]) -> list[Cell]:
    if OmegaConf.select(config, "plan"):
        fast = compose_jobs(config, context.config_loader, jobs)
        if fast is not None:
            return [
                plan_cell(i, cfg, choices, overrides)
                for i, ((cfg, choices), overrides) in enumerate(zip(fast, jobs, strict=True))
            ]
    cells = []
    for i, overrides in enumerate(jobs):
        cfg = context.config_loader.load_sweep_config(config, list(overrides))
        cells.append(plan_cell(i, cfg, cfg.hydra.runtime.choices, overrides))
    trackings = {(c.config.tracking.uri, c.config.tracking.experiment) for c in cells}
    if len(trackings) > 1:
        raise UserError("tracking.* must be the same for every cell of a sweep")
    return cells


def with_baselines(
    cells: list[Cell], loader: Any, master: DictConfig, sink: MlflowSink
) -> list[Cell]:
    """Resolve every eval cell's baseline (composed with ``loader`` like any sweep job)."""

    def compose(overrides: list[str]) -> Cell:
        try:
            cfg = loader.load_sweep_config(master, overrides)
        except Exception as e:  # Hydra's composition errors: one line naming the value
            message = one_line(e)
            if message is None:
                raise
            raise UserError(f"eval.baseline: {message}") from None
        return plan_cell(-1, cfg, cfg.hydra.runtime.choices, overrides)

    def finished(keys: list[str]) -> list[str]:
        return list(sink.finished_cells(keys))

    return attach(cells, compose, finished, sink.describe())


def _job_overrides(cell: Cell, sweep: Sweep, plan_dir: Path) -> list[str]:
    path = planned.save(cell, plan_dir / f"{cell.index}-{cell.key}.json")
    return [
        *cell.overrides,
        f"run.cell_file={path.resolve()}",
        f"run.parent_run_id={sweep.parent_id}",
        f"run.sweep_id={sweep.id}",
        f"run.sweep_name={sweep.name}",
    ]


def _outcome(sweep: Sweep, cell: Cell, ret: JobReturn) -> Outcome:
    if ret.status is JobStatus.COMPLETED:
        if isinstance(ret.return_value, Outcome):
            return ret.return_value
        if isinstance(ret.return_value, JobFailed):
            if ret.return_value.tracking:  # the store is what failed: stop the sweep
                raise TrackingError(ret.return_value.error)
            return sweep.failed(cell, ret.return_value.error)
    try:  # a job that raised before the task ran: its exception, without Hydra's stderr line
        with contextlib.redirect_stderr(io.StringIO()):
            value = ret.return_value
        error = f"the job returned {type(value).__name__}, not an outcome"
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    return sweep.failed(cell, error)


def run_sweep(
    config: DictConfig,
    context: HydraContext,
    launcher: Any,
    params: dict[str, str] | None,
    arguments: list[str],
    max_batch_size: int | None,
    grid: list[dict[str, str]] | None = None,
) -> int:
    """The HarnessSweeper's body; the sweep's exit status."""
    jobs = expand(params, arguments, grid)
    cells = plan_sweep(config, context, jobs)
    name = _sweep_name(config)
    if cells[0].config.plan:  # print what would happen; load nothing, record nothing
        print(render(cells, title_of(cells, name)))
        return 0
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    console = Console()
    sink = MlflowSink(cells[0].config.tracking)
    cells = with_baselines(cells, context.config_loader, config, sink)
    sweep = Sweep(name, cells, sink, console)
    try:
        _run_cells(sweep, launcher, max_batch_size, sweep_dir)
        code = sweep.finish(sweep_dir)
    except BaseException as e:
        sweep.abort(e)
        raise
    sweep_ended(cells[0].config, sweep.id, sweep_dir, console)
    return code


def _run_cells(sweep: Sweep, launcher: Any, max_batch_size: int | None, sweep_dir: Path) -> None:
    console = sweep.console
    pending = sweep.start(force=sweep.cells[0].config.run.force)
    # baselines first, all of them: their variants fetch the baseline's items and reference
    baselines = [c for c in pending if c.baseline_key == c.key]
    rest = [c for c in pending if c.baseline_key != c.key]
    done = 0
    for group in (baselines, rest):
        size = max_batch_size or max(len(group), 1)
        for start in range(0, len(group), size):
            batch = group[start : start + size]
            for c in batch:
                console.started(c)
            overrides = [_job_overrides(c, sweep, sweep_dir / PLANNED_DIR) for c in batch]
            returns = launcher.launch(overrides, initial_job_idx=done)
            done += len(batch)
            for cell, ret in zip(batch, returns, strict=True):
                sweep.record(cell, _outcome(sweep, cell, ret))


def run_job(cfg: DictConfig) -> Outcome | JobFailed:
    """A sweep's job: the planned cell, run and recorded under the sweep's parent run."""
    run = cfg.run
    try:
        cell = planned.load(Path(str(run.cell_file)))
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        sink = MlflowSink(cell.config.tracking)
        parent = (str(run.parent_run_id), str(run.sweep_id or ""), str(run.sweep_name or ""))
        return execute_cell(cell, out_dir / "cell", sink, parent)
    except TrackingError as e:
        return JobFailed(str(e), tracking=True)
    except Exception as e:  # the sweeper records the cell as failed and goes on
        return JobFailed(f"{type(e).__name__}: {e}")


def run_single(cfg: DictConfig) -> int:
    """``python -m harness [overrides]`` without a sweep: one cell, planned and run."""
    hc = HydraConfig.get()
    overrides = _cell_overrides(list(hc.overrides.task))
    cell = plan_cell(0, cfg, hc.runtime.choices, overrides)
    if cell.config.plan:
        print(render([cell], title_of([cell], "single")))
        return 0
    if cell.skip:  # one cell asked for by name: refuse it, as a sweep would skip it
        hint = "; run.force_fit=true runs it anyway" if cell.skip.startswith(NO_FIT) else ""
        raise UserError(f"this cell cannot run: {cell.skip}{hint}")
    out_dir = Path(hc.runtime.output_dir)
    sink = MlflowSink(cell.config.tracking)
    if cell.config.eval.enabled:
        master = OmegaConf.create({"hydra": OmegaConf.to_container(hc)})
        loader = GlobalHydra.instance().config_loader()
        (cell,) = with_baselines([cell], loader, master, sink)
    console = Console()
    sweep = Sweep("single", [cell], sink, console)
    try:
        for pending in sweep.start(force=cell.config.run.force):
            console.started(pending)
            parent = (sweep.parent_id, sweep.id, "single")
            sweep.record(pending, execute_cell(pending, out_dir / "cell", sink, parent))
        code = sweep.finish(out_dir)
    except BaseException as e:
        sweep.abort(e)
        raise
    sweep_ended(cell.config, sweep.id, out_dir, console)
    return code

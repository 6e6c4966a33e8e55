"""Glue between Hydra and the orchestrator, for both ways a cell can start.

Sweep (``+sweep=NAME`` or ``-m``): the HarnessSweeper composes every job in the parent,
plans the cells, opens the parent run, then hands the cells still to run to whatever Hydra
launcher is configured (local by default; submitit for a cluster), each job carrying its
parent run id and cell key as ``run.*`` overrides. Single run: the task plans its one cell and
runs it as a sweep of one. Hydra discards a task's return value, so the exit status travels
through ``exit_code()``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from harness.config.schema import HarnessConfig
from harness.plan.cells import plan_cell
from harness.plan.matrix import Cell, expand
from harness.plan.table import render, title_of
from harness.results.result import Outcome
from harness.sweep.baselines import attach
from harness.sweep.orchestrator import Sweep, execute_cell
from harness.sweep.progress import Console
from harness.tracking.sink import MlflowSink

_INTERNAL = (
    "run.parent_run_id=",
    "run.cell_key=",
    "run.baseline_key=",
    "run.sweep_id=",
    "run.sweep_name=",
)
_exit: dict[str, Any] = {"code": 0, "error": None}


def exit_code() -> int:
    return int(_exit["code"])


def user_error() -> UserError | None:
    """A UserError the task caught: Hydra would print 'Error executing job' and re-raise."""
    error: UserError | None = _exit["error"]
    return error


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


def _job_overrides(cell: Cell, sweep: Sweep) -> list[str]:
    extra = [f"run.baseline_key={cell.baseline_key}"] if cell.baseline_key else []
    return [
        *cell.overrides,
        f"run.parent_run_id={sweep.parent_id}",
        f"run.cell_key={cell.key}",
        f"run.sweep_id={sweep.id}",
        f"run.sweep_name={sweep.name}",
        *extra,
    ]


def _outcome(sweep: Sweep, cell: Cell, ret: JobReturn) -> Outcome:
    if ret.status is JobStatus.COMPLETED and isinstance(ret.return_value, Outcome):
        return ret.return_value
    error = ret._return_value  # not .return_value: that prints to stderr and re-raises
    return sweep.failed(cell, f"{type(error).__name__}: {error}")


def run_sweep(
    config: DictConfig,
    context: HydraContext,
    launcher: Any,
    params: dict[str, str] | None,
    arguments: list[str],
    max_batch_size: int | None,
    grid: list[dict[str, str]] | None = None,
) -> None:
    """The HarnessSweeper's body."""
    jobs = expand(params, arguments, grid)
    cells = plan_sweep(config, context, jobs)
    name = _sweep_name(config)
    if cells[0].config.plan:  # print what would happen; load nothing, record nothing
        print(render(cells, title_of(cells, name)))
        return
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    console = Console()
    sink = MlflowSink(cells[0].config.tracking)
    cells = with_baselines(cells, context.config_loader, config, sink)
    sweep = Sweep(name, cells, sink, console)
    pending = sweep.start(force=cells[0].config.run.force)
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
            returns = launcher.launch(
                [_job_overrides(c, sweep) for c in batch], initial_job_idx=done
            )
            done += len(batch)
            for cell, ret in zip(batch, returns, strict=True):
                sweep.record(cell, _outcome(sweep, cell, ret))
    _exit["code"] = sweep.finish(sweep_dir)
    report(cells[0].config, sweep, sweep_dir, console)


def report(cfg: HarnessConfig, sweep: Sweep, out_dir: Path, console: Console) -> None:
    """The sweep's report (HTML, Markdown, CSV) on its parent run; its recommendation and
    path printed. A report that fails is a warning: every cell is already recorded."""
    if not cfg.run.report:
        return
    try:
        from harness.tracking.store import SweepStore
        from reports.build import build
        from reports.markdown import recommendation

        store = SweepStore(cfg.tracking)
        built = build(store, store.find(sweep.id), cfg.decision, out_dir / "report")
    except Exception as e:  # never lose a finished sweep to its report
        console.warn(f"no report: {type(e).__name__}: {e}")
        return
    console.report(recommendation(built.recommendation), built.html_path)


def run_task(cfg: DictConfig) -> Outcome | None:
    """The Hydra task: one cell of a sweep, or a single run when no sweeper launched it."""
    try:
        return _run_task(cfg)
    except UserError as e:
        if OmegaConf.select(cfg, "run.parent_run_id"):
            raise  # a sweep job: the sweeper records the cell as failed and goes on
        _exit["error"] = e  # raising here would make Hydra print "Error executing job"
        return None


def _run_task(cfg: DictConfig) -> Outcome | None:
    hc = HydraConfig.get()
    overrides = _cell_overrides(list(hc.overrides.task))
    index = 0 if OmegaConf.is_missing(hc.job, "num") else int(hc.job.num)
    cell = plan_cell(index, cfg, hc.runtime.choices, overrides)
    if cell.config.plan:
        print(render([cell], title_of([cell], "single")))
        return None
    out_dir = Path(hc.runtime.output_dir)
    run = cell.config.run
    sink = MlflowSink(cell.config.tracking)
    if run.parent_run_id:
        identity = (run.sweep_id or "", run.sweep_name or "")
        return execute_cell(cell, out_dir / "cell", sink, run.parent_run_id, identity)
    if cell.config.eval.enabled:
        master = OmegaConf.create({"hydra": OmegaConf.to_container(hc)})
        loader = GlobalHydra.instance().config_loader()
        (cell,) = with_baselines([cell], loader, master, sink)
    console = Console()
    sweep = Sweep("single", [cell], sink, console)
    for pending in sweep.start(force=run.force):
        console.started(pending)
        outcome = execute_cell(
            pending, out_dir / "cell", sink, sweep.parent_id, (sweep.id, "single")
        )
        sweep.record(pending, outcome)
    _exit["code"] = sweep.finish(out_dir)
    report(cell.config, sweep, out_dir, console)
    return None

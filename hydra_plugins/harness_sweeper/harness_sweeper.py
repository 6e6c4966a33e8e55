"""Hydra sweeper that expands the matrix in the parent and launches only runnable cells.

Hydra only instantiates plugins from the ``hydra_plugins`` namespace package, so this thin
class lives here and delegates to ``harness.sweep.launch.run_sweep``. Unlike BasicSweeper it plans
every cell before launching any (skips, resume, progress, one parent run) and a failing cell
never ends the sweep. Its config schema is ``harness.config.schema.HarnessSweeperConf``; the CLI
registers this class with Hydra (``harness.cli``).
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class HarnessSweeper(Sweeper):
    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        grid: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.grid = [dict(block) for block in grid or []]
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from harness.sweep.launch import HarnessTask, run_sweep

        assert self.config is not None and self.hydra_context is not None
        code = run_sweep(
            self.config,
            self.hydra_context,
            self.launcher,
            self.params,
            arguments,
            self.max_batch_size,
            self.grid,
        )
        # Hydra drops a sweeper's return value: the invocation's task keeps the exit status
        if isinstance(self.task_function, HarnessTask):
            self.task_function.sweep_ended(code)
        return code

"""Hydra sweeper that expands the matrix in the parent and launches only runnable cells.

Hydra only instantiates plugins from the ``hydra_plugins`` namespace package, so this thin
class lives here and delegates to ``harness.sweep.launch.run_sweep``. Unlike BasicSweeper it plans
every cell before launching any (skips, resume, progress, one parent run) and a failing cell
never ends the sweep. Its config is registered by ``harness.config.schema.register_configs``.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class HarnessSweeperConf:
    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.HarnessSweeper"
    max_batch_size: int | None = 1  # cells per launcher call; raise it for parallel launchers
    params: dict[str, str] | None = None  # axes shared by every cell
    # blocks of axes expanded one after another (each with `params`), e.g. one per runtime
    grid: list[dict[str, str]] | None = None


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

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from harness.sweep.launch import run_sweep

        assert self.config is not None and self.hydra_context is not None
        run_sweep(
            self.config,
            self.hydra_context,
            self.launcher,
            self.params,
            arguments,
            self.max_batch_size,
            self.grid,
        )
        return None

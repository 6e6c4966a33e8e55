"""Store the config schemas in Hydra's ConfigStore: called by the CLI (and by tests that
compose), never at import time. Registering Hydra's sweeper *plugin* is the CLI's job."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from harness.config.schema import HarnessConfig, HarnessSweeperConf
from runners import get_runner, runner_names


def register_configs() -> None:
    """Store the schemas; YAML files extend them."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=HarnessConfig)
    # Runner schemas live outside the `runtime` group so they never show up as choices.
    for name in runner_names():
        cs.store(group="schema/runtime", name=name, node=get_runner(name).Config)
    cs.store(group="hydra/sweeper", name="harness", node=HarnessSweeperConf)

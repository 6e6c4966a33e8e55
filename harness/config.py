"""Typed structured configs: one dataclass per config group, registered in Hydra's ConfigStore.

YAML files under ``conf/`` extend these schemas; the CLI converts the composed config to these
dataclasses once (``OmegaConf.to_object``) and nothing downstream sees a DictConfig.
``__post_init__`` validates only: no environment changes, no I/O, no runtime imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from runners import RunnerConfig, get_runner, runner_names


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class TrackingBackend(StrEnum):
    sqlite = "sqlite"  # a local SQLite file; the default
    server = "server"  # a team `mlflow server` over HTTP(S)


@dataclass
class ModelSource:
    """Where the checkpoint comes from: an installed distribution's file or a local path."""

    package: str | None = None  # distribution shipping the file; located without importing it
    file: str | None = None  # file name inside that distribution
    path: str | None = None  # explicit local path; wins over package/file

    def __post_init__(self) -> None:
        if self.path is None and not (self.package and self.file):
            raise ValueError("model.source needs `path`, or both `package` and `file`")


@dataclass
class ModelConfig:
    name: str = MISSING
    source: ModelSource = MISSING
    hf_id: str | None = None  # upstream checkpoint, for provenance
    parameters: int | None = None


@dataclass
class MethodConfig:
    name: str = MISSING  # gguf | none
    library: str = ""  # the tool that produces the artifact, recorded with its version


@dataclass
class PrecisionConfig:
    name: str = MISSING
    # What the name claims. The real bits per weight are read from the produced file.
    nominal_bits: float | None = None


@dataclass
class HardwareConfig:
    name: str = MISSING
    device: Device = Device.cpu
    threads: int | None = None  # None: every core this process may run on

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"hardware.threads={self.threads} must be >= 1 or null")


@dataclass
class WorkloadConfig:
    name: str = MISSING
    prompts: list[str] = MISSING
    max_new_tokens: int = 64
    warmup_repetitions: int = 1
    repetitions: int = 3

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("workload.prompts is empty")
        if self.max_new_tokens < 2:
            raise ValueError(f"workload.max_new_tokens={self.max_new_tokens} must be >= 2")
        if self.repetitions < 1:
            raise ValueError(f"workload.repetitions={self.repetitions} must be >= 1")
        if self.warmup_repetitions < 0:
            raise ValueError(f"workload.warmup_repetitions={self.warmup_repetitions} is < 0")


@dataclass
class TrackingConfig:
    backend: TrackingBackend = TrackingBackend.sqlite
    uri: str = MISSING
    experiment: str = "harness"


@dataclass
class RunControl:
    """How to run, not what to measure: never part of a cell's identity."""

    force: bool = False  # re-run cells that already have a finished run
    timeout_s: float = 1800.0  # per cell measurement worker
    prepare_timeout_s: float = 3600.0  # per cell artifact preparation (quantization)
    cache_dir: str = "~/.cache/harness"
    # Set by the sweeper on each job it launches.
    parent_run_id: str | None = None
    cell_key: str | None = None
    sweep_id: str | None = None
    sweep_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout_s", "prepare_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"run.{name}={getattr(self, name)} must be > 0")


@dataclass
class HarnessConfig:
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    precision: PrecisionConfig = MISSING
    runtime: RunnerConfig = MISSING
    hardware: HardwareConfig = MISSING
    workload: WorkloadConfig = MISSING
    tracking: TrackingConfig = MISSING
    run: RunControl = field(default_factory=RunControl)


AXES = ("model", "method", "precision", "runtime", "hardware", "workload")


def register_configs() -> None:
    """Store the schemas; YAML files extend them. Called by the CLI, not at import time."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeper, HarnessSweeperConf

    # Hydra finds plugins by walking the hydra_plugins namespace, which editable installs
    # hide behind an import hook; registering the class directly works for every install.
    Plugins.instance().register(HarnessSweeper)

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=HarnessConfig)
    # Runner schemas live outside the `runtime` group so they never show up as choices.
    for name in runner_names():
        cs.store(group="schema/runtime", name=name, node=get_runner(name).Config)
    cs.store(group="hydra/sweeper", name="harness", node=HarnessSweeperConf)


def from_container(data: dict[str, Any]) -> HarnessConfig:
    """Rebuild the typed config from its resolved plain form (as written into cell.json)."""
    schema = OmegaConf.structured(HarnessConfig)
    schema.runtime = OmegaConf.structured(get_runner(data["runtime"]["name"]).Config)
    merged = OmegaConf.merge(schema, data)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, HarnessConfig)
    return obj


def to_container(cfg: HarnessConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (enums as their values)."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}

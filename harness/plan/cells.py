"""Turn composed configs into cells, checking everything that can be checked without a
runtime: the config types, the model source (a readable GGUF file or an HF checkpoint
directory), the compatibility rules, and the packages where the worker will run. Mistakes
here are the user's, so they surface as one-line UserErrors before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from harness.artifacts.cache import ArtifactCache, locate_source, sha256_path
from harness.artifacts.gguf_file import InvalidGGUFError, TensorTable, read_table
from harness.artifacts.quantize import PlanError, plan
from harness.config.errors import UserError
from harness.config.schema import AXES, HarnessConfig
from harness.feasibility.compat import missing_reason, required_packages, skip_reason
from harness.feasibility.verdict import judge
from harness.measure.metadata import machine_identity
from harness.metrics.derive import ESTIMATOR_VERSION
from harness.plan.interpreter import dist_versions
from harness.plan.matrix import Cell, cell_id, cell_key
from harness.quality.gate import check_config as check_eval
from runners import get_runner


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    sha256: str
    table: TensorTable | None  # None: an HF checkpoint directory


_sources: dict[tuple[str, str], Source] = {}


def source_of(config: HarnessConfig) -> Source:
    """Locate, validate and hash the model source (remembered per process and path)."""
    if config.model.source is None:
        raise UserError(
            f"model {config.model.name} has no source (it is known by its architecture only); "
            "plan it with plan=true, or set model.source.path to its checkpoint to run it"
        )
    path = locate_source(config.model.source)
    memo = (str(path), config.run.cache_dir)
    if memo not in _sources:
        table = None
        if not path.is_dir():
            try:
                table = read_table(path)
            except InvalidGGUFError as e:
                raise UserError(f"model {config.model.name}: {e}") from None
        cache = ArtifactCache(Path(config.run.cache_dir))
        cache.root.mkdir(parents=True, exist_ok=True)
        _sources[memo] = Source(path, sha256_path(path, cache.hash_index), table)
    return _sources[memo]


def to_typed(cfg: DictConfig) -> HarnessConfig:
    """Composed DictConfig -> typed dataclasses, once, at the edge."""
    if "hydra" in cfg:
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.pop("hydra", None)
    try:
        if OmegaConf.get_type(cfg) is not HarnessConfig:  # composed outside Hydra (fast plan)
            schema = OmegaConf.structured(HarnessConfig)
            schema.runtime = OmegaConf.structured(get_runner(str(cfg.runtime.name)).Config)
            merged = OmegaConf.merge(schema, cfg)
            assert isinstance(merged, DictConfig)
            cfg = merged
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        key = e.full_key
        hint = " (e.g. tracking.uri=http://mlflow.internal:5000)" if key == "tracking.uri" else ""
        raise UserError(f"{key} has no value; set {key}=...{hint}") from None
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        key = getattr(e, "full_key", None)
        raise UserError(
            f"config error at {key}: {msg}" if key else f"config error: {msg}"
        ) from None
    except ValueError as e:
        raise UserError(f"config error: {e}") from None
    assert isinstance(obj, HarnessConfig)
    hw = obj.hardware
    if obj.cost.enabled and hw.price_per_hour is None:
        raise UserError(
            f"cost is requested but hardware profile {hw.name!r} has no price_per_hour; set "
            "hardware.price_per_hour (with price_snapshot and price_source) or cost.enabled=false"
        )
    return obj


def installed(config: HarnessConfig) -> dict[str, str | None]:
    """Versions of what the cell needs, where its worker will run (None: not installed)."""
    return dist_versions(config.runtime.python, required_packages(config))


def runtime_versions(config: HarnessConfig) -> dict[str, str]:
    found = {k: v for k, v in installed(config).items() if v is not None}
    return {**found, "harness.estimator": ESTIMATOR_VERSION}


def steps_of(config: HarnessConfig, source: Source) -> list[Any]:
    """The artifact derivation steps of this cell (raises PlanError when impossible)."""
    fmt = config.runtime.model_format()
    converter = None
    if fmt == "hf" and source.table is not None:
        converter = dist_versions(config.runtime.python, ["transformers"])["transformers"]
    return plan(
        config.method.name, config.precision.name, source.sha256, source.table, fmt, converter
    )


def _skip(config: HarnessConfig, source: Source) -> str | None:
    reason = skip_reason(config)
    if reason is None:
        try:
            steps_of(config, source)
        except PlanError as e:
            reason = str(e)
    return reason


def gguf_weights(config: HarnessConfig, source: Source) -> float | None:
    """Tensor bytes of the GGUF file this cell loads, when it exists already (exact)."""
    if config.runtime.model_format() != "gguf" or source.table is None:
        return None
    try:
        steps = steps_of(config, source)
    except PlanError:
        return None
    if not steps:
        return float(source.table.tensor_bytes)
    info = ArtifactCache(Path(config.run.cache_dir)).lookup(steps[-1].key)
    return float(info.tensor_bytes) if info is not None else None


def plan_cell(
    index: int, cfg: DictConfig, choices: Mapping[str, Any], overrides: Sequence[str]
) -> Cell:
    """The cell of one composed job. With plan=true: support and fit only, without hashing,
    keys or package checks (a model with a source still gets exact GGUF weights)."""
    config = to_typed(cfg)
    check_eval(config.eval)
    axis_choices = {a: str(choices.get(a)) for a in AXES}
    source = None if config.plan and config.model.source is None else source_of(config)
    verdict = judge(config, gguf_weights(config, source) if source else None, config.plan)
    if config.plan or source is None:
        key, blocked, skip = "plan", None, skip_reason(config)
    else:
        key = config.run.cell_key or cell_key(
            config, source.sha256, runtime_versions(config), machine_identity()
        )
        blocked, skip = missing_reason(config, installed(config)), _skip(config, source)
    return Cell(
        index=index,
        cell_id=cell_id(axis_choices, overrides),
        choices=axis_choices,
        overrides=tuple(overrides),
        config=config,
        key=key,
        skip=verdict.unsupported or skip or verdict.no_fit,
        blocked=blocked,
        baseline_key=config.run.baseline_key,
        caveat=verdict.caveat,
        footprint=verdict.footprint,
        unpredicted=verdict.unpredicted,
    )

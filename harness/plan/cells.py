"""Turn a composed job into a planned ``Cell``, checking everything that can be checked
without a runtime: the config types, the model source (a readable GGUF file or an HF checkpoint
directory, hashed), whether the cell can run at all (harness/feasibility/support.py), how its
model file is derived, its predicted memory, and the packages where its worker will run.
Mistakes here are the user's, so they surface as one-line UserErrors before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.artifacts.cache import ArtifactCache, Step
from harness.artifacts.quantize import CONVERTER, PlanError, plan
from harness.artifacts.source import Source, source_of
from harness.config.convert import to_typed
from harness.config.schema import AXES, HarnessConfig
from harness.feasibility.support import missing_reason, required_packages
from harness.feasibility.verdict import judge
from harness.measure.metadata import machine_identity
from harness.metrics.derive import ESTIMATOR_VERSION
from harness.plan.cell import Cell
from harness.plan.interpreter import dist_versions
from harness.plan.matrix import cell_id, cell_key
from harness.quality.gate import check_config as check_eval
from runners import ModelFormat


def installed(config: HarnessConfig) -> dict[str, str | None]:
    """Versions of what the cell needs, where its worker will run (None: not installed)."""
    return dist_versions(config.runtime.python, list(required_packages(config)))


def runtime_versions(config: HarnessConfig) -> dict[str, str]:
    found = {k: v for k, v in installed(config).items() if v is not None}
    return {**found, "harness.estimator": ESTIMATOR_VERSION}


def steps_of(config: HarnessConfig, source: Source) -> list[Step]:
    """The artifact derivation steps of this cell (raises PlanError when impossible)."""
    fmt = config.runtime.model_format()
    converter = None
    if fmt is ModelFormat.hf and source.table is not None:
        converter = dist_versions(config.runtime.python, [CONVERTER])[CONVERTER]
    return plan(
        config.method.name, config.precision.name, source.sha256, source.table, fmt, converter
    )


def gguf_weights(
    config: HarnessConfig, source: Source, steps: Sequence[Step] | None
) -> float | None:
    """Tensor bytes of the GGUF file this cell loads, when it exists already (exact)."""
    if config.runtime.model_format() is not ModelFormat.gguf or source.table is None:
        return None
    if steps is None:
        return None
    if not steps:
        return float(source.table.tensor_bytes)
    info = ArtifactCache(Path(config.run.cache_dir)).lookup(steps[-1].key)
    return float(info.tensor_bytes) if info is not None else None


def plan_cell(
    index: int, cfg: DictConfig, choices: Mapping[str, Any], overrides: Sequence[str]
) -> Cell:
    """The cell of one composed job. With plan=true: support and fit only, without keys or
    package checks (a model with a source still gets exact GGUF weights)."""
    config = to_typed(cfg)
    check_eval(config.eval)
    axis_choices = {a: str(choices.get(a)) for a in AXES}
    if (served := config.runtime.served_variant()) is not None:
        # the harness builds nothing for a server it did not launch: its label is what the
        # user declared it serves ("unknown" if nothing), never the method group's default
        axis_choices["method"], axis_choices["precision"] = served
    source = None if config.plan and config.model.source is None else source_of(config)
    steps: list[Step] | None = None
    derivation = None  # why the model file cannot be derived
    if source is not None:
        try:
            steps = steps_of(config, source)
        except PlanError as e:
            derivation = str(e)
    verdict = judge(config, gguf_weights(config, source, steps) if source else None, config.plan)
    key, blocked = "plan", None
    if not config.plan and source is not None:
        key = cell_key(config, source.sha256, runtime_versions(config), machine_identity())
        blocked = missing_reason(config, installed(config))
    return Cell(
        index=index,
        cell_id=cell_id(axis_choices, overrides),
        choices=axis_choices,
        overrides=tuple(overrides),
        config=config,
        key=key,
        skip=verdict.unsupported or derivation or verdict.no_fit,
        blocked=blocked,
        caveat=verdict.caveat,
        footprint=verdict.footprint,
        unpredicted=verdict.unpredicted,
        source=source,
        steps=tuple(steps or ()),
    )

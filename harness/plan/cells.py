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

from harness.artifacts.cache import ArtifactCache, Step, content_key
from harness.artifacts.checkpoints import Choice, NoCheckpoint
from harness.artifacts.hub import HubUnavailable
from harness.artifacts.quantize import CONVERTER, PlanError, plan
from harness.artifacts.source import Source, checkpoint_of, source_of
from harness.config.convert import to_typed
from harness.config.schema import AXES, HarnessConfig
from harness.feasibility.support import missing_reason, required_packages
from harness.feasibility.verdict import judge
from harness.measure.image import check_host
from harness.measure.metadata import machine_identity
from harness.metrics.derive import ESTIMATOR_VERSION
from harness.plan.cell import Cell, CheckpointPlan
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


def _checkpoint_plan(
    choice: Choice, source: Source | None, unavailable: str | None
) -> CheckpointPlan:
    spec = choice.spec
    if source is not None and source.hub is not None:
        hub = source.hub
        label = f"{source.label} ({hub.commit[:12]})"
        note = "" if hub.online or hub.complete else "offline"
        return CheckpointPlan(label, hub.key, hub.missing_bytes, hub.total_bytes, note)
    if source is not None:
        return CheckpointPlan(str(source.path), source.sha256, 0, None)
    if spec is not None and spec.repo is not None and spec.path is None:
        label = f"{spec.repo}@{spec.revision}"
        key = content_key("hub-unresolved", spec.repo, spec.revision, *choice.patterns)
        return CheckpointPlan(label, key, None, None, unavailable or "")
    return CheckpointPlan("model.source (none)", "none", None, None, unavailable or "")


def _source(config: HarnessConfig) -> tuple[Choice | None, Source | None, str | None, str | None]:
    """The cell's checkpoint, its source, and why it has none (no checkpoint: the cell is
    skipped) or cannot have it now (a Hub checkpoint offline: the cell is blocked)."""
    try:
        choice = checkpoint_of(config)
    except NoCheckpoint as e:
        known = config.model.checkpoints or config.model.source is not None
        return None, None, str(e) if known or not config.plan else None, None
    if config.plan and choice.spec is None and config.model.source is None:
        return choice, None, None, None  # known by its architecture only: planned, not run
    try:
        return choice, source_of(config, choice), None, None
    except HubUnavailable as e:
        return choice, None, None, str(e)


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
    choice, source, derivation, unavailable = _source(config)
    steps: list[Step] | None = None
    if source is not None and choice is not None:
        try:  # a checkpoint published as the cell's own method and precision is loaded as is
            steps = [] if choice.exact else steps_of(config, source)
        except PlanError as e:
            derivation = str(e)
    verdict = judge(config, gguf_weights(config, source, steps) if source else None, config.plan)
    key, blocked = "plan", None
    checkpoint = _checkpoint_plan(choice, source, unavailable) if choice else None
    if not config.plan and (source is not None or unavailable):
        sha = source.sha256 if source is not None else checkpoint.key if checkpoint else ""
        key = cell_key(config, sha, runtime_versions(config), machine_identity())
        blocked = unavailable or check_host(config) or missing_reason(config, installed(config))
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
        checkpoint=checkpoint,
    )

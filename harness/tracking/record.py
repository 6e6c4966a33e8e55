"""What gets tracked for a cell or a sweep, as plain data (no MLflow import here).

Names are identical across cells and runtimes so MLflow's compare views line up: headline
metrics by their docs/metrics.md names, per-repetition values as ``rep.<name>`` with the
repetition as step, params = the flattened resolved config, tags = identity and provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.measure.image import image_tags
from harness.metrics import names
from harness.metrics.cost import price_tags
from harness.metrics.derive import ESTIMATOR_VERSION
from harness.plan.cell import Cell
from harness.plan.matrix import flatten, identity
from harness.quality.gate import dataset_lineage
from harness.results.result import CellResult, Status
from runners import get_runner

# The layout of a recorded run (metric, tag and param names as in harness/metrics/names.py,
# rep.<name> histories, the artifacts), tagged on every run as harness.record_schema; a reader
# upgrades older layouts (harness/tracking/store.py). Format history:
#   1: the layout of every run so far; runs logged before the tag existed are version 1.
RECORD_SCHEMA_VERSION = 1
SETTINGS_PREFIX = "gen."  # effective generation settings, as params
PARAM_MAX = 6000  # MLflow's limit on a param value
TAG_MAX = 8000  # and on a tag value


@dataclass
class RunRecord:
    name: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int]] = field(default_factory=list)  # key, value, step
    files: list[Path] = field(default_factory=list)  # artifacts to upload
    # dataset lineage (MLflow dataset inputs): name, digest, source_type, source, profile, context
    datasets: list[dict[str, str]] = field(default_factory=list)


def _param(value: str) -> str:
    if len(value) <= PARAM_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"sha256:{digest} ({len(value)} chars; full value in config.yaml)"


def environment_tags(env: dict[str, Any]) -> dict[str, str]:
    tags = {
        "host.name": str(env.get("host", "")),
        "host.os": str(env.get("os", "")),
        "cpu.model": str(env.get("cpu", {}).get("model", "")),
        "cpu.usable_cores": str(env.get("cpu", {}).get("usable_cores", "")),
        "python.version": str(env.get("python", "")),
        "python.executable": str(env.get("python_executable", "")),
        "git.commit": str(env.get("git", {}).get("commit", "unknown")),
        "git.dirty": str(env.get("git", {}).get("dirty", "unknown")),
    }
    gpu = env.get("gpu", {})
    if gpu.get("available"):
        tags["gpu.name"] = ", ".join(d["name"] for d in gpu["devices"])
        tags["gpu.driver"] = str(gpu.get("driver"))
        tags["gpu.cuda_driver"] = str(gpu.get("cuda_driver"))
    else:
        tags["gpu.absent"] = str(gpu.get("reason", "no GPU information"))
    tags.update({f"pkg.{k}": v for k, v in env.get("packages", {}).items()})
    tags.update(image_tags(env.get("image"), gpu.get("cuda_driver")))
    return tags


def cell_tags(cell: Cell, sweep_id: str, sweep_name: str) -> dict[str, str]:
    runner = get_runner(cell.config.runtime.name)
    tags = {
        names.KIND: "cell",
        names.RECORD_SCHEMA: str(RECORD_SCHEMA_VERSION),
        names.CELL_KEY: cell.key,
        names.CELL_ID: cell.cell_id,
        names.SWEEP_ID: sweep_id,
        names.SWEEP_NAME: sweep_name,
        "harness.estimator_version": ESTIMATOR_VERSION,
        "harness.overrides": " ".join(cell.overrides),
        **{f"harness.choice.{k}": v for k, v in cell.choices.items()},
    }
    if runner.capabilities.synthetic:
        tags[names.SYNTHETIC] = "true"  # injected numbers: reports must exclude this run
    if cell.source is not None:
        tags["checkpoint.source"] = cell.source.where
        tags["checkpoint.location"] = cell.source.label[:TAG_MAX]
        if cell.source.hub is not None:
            tags.update({k: v[:TAG_MAX] for k, v in cell.source.hub.tags().items()})
    return tags


def validity_tags(result: CellResult) -> dict[str, str]:
    """VALID/INVALID with the reasons, and each kind of flag under its own searchable tag."""
    if result.status not in (Status.ok, Status.invalid):
        return {}
    tags = {names.VALIDITY: "VALID" if not result.problems else "INVALID"}
    if result.problems:
        tags["harness.invalid_reasons"] = "; ".join(result.problems)[:TAG_MAX]
    if result.flags:
        tags[names.FLAGS] = " | ".join(result.flags)[:TAG_MAX]
    unstable = [f.removeprefix("unstable: ") for f in result.flags if f.startswith("unstable: ")]
    if unstable:
        tags[names.UNSTABLE] = "; ".join(unstable)[:TAG_MAX]
    return tags


def cell_record(
    cell: Cell, result: CellResult, env: dict[str, Any], sweep_id: str, sweep_name: str
) -> RunRecord:
    tags = {
        **cell_tags(cell, sweep_id, sweep_name),
        **environment_tags(env),
        names.STATUS: result.status.value,
    }
    if result.reason:
        tags[names.REASON] = result.reason[:TAG_MAX]
    if result.error:
        tags["harness.error_tail"] = result.error[-TAG_MAX:]
    tags.update(validity_tags(result))
    tags.update(price_tags(cell.config.hardware))
    tags.update({k: v[:TAG_MAX] for k, v in result.tags.items()})
    tags["runtime.name"] = cell.config.runtime.name
    tags.update({f"runtime.{k}": v[:TAG_MAX] for k, v in result.versions.items()})
    tags.update({f"absent.{k}": v for k, v in result.absent.items()})
    if result.artifact is not None:
        a = result.artifact
        tags.update({"artifact.sha256": a.sha256, "artifact.file_type": a.file_type})
        tags["artifact.cache_hit"] = str(a.cache_hit).lower()
        tags.update({f"artifact.recipe.{k}": v for k, v in a.recipe.items()})
        tags.update({f"artifact.params.{k}": str(v) for k, v in a.tensor_types.items()})
    params = {k: _param(v) for k, v in flatten(identity(cell.config)).items()}
    params.update({f"{SETTINGS_PREFIX}{k}": _param(v) for k, v in result.settings.items()})
    metrics = [(k, float(v), 0) for k, v in sorted(result.metrics.items())]
    for key, values in sorted(result.per_rep.items()):
        metrics += [(f"rep.{key}", float(v), i) for i, v in enumerate(values)]
    return RunRecord(
        name=cell.cell_id,
        tags=tags,
        params=params,
        metrics=metrics,
        datasets=dataset_lineage(cell.config.eval),
    )


def skipped_result(cell: Cell) -> CellResult:
    return CellResult(status=Status.skipped, reason=cell.skip or "")


def sweep_record(sweep_id: str, name: str, cells: list[Cell], env: dict[str, Any]) -> RunRecord:
    varying = {
        axis: sorted({c.choices.get(axis, "?") for c in cells})
        for axis in (cells[0].choices if cells else {})
    }
    params = {f"axis.{k}": ",".join(v) for k, v in varying.items()}
    params["cells"] = str(len(cells))
    tags = {
        names.KIND: "sweep",
        names.RECORD_SCHEMA: str(RECORD_SCHEMA_VERSION),
        names.SWEEP_ID: sweep_id,
        names.SWEEP_NAME: name,
        "harness.estimator_version": ESTIMATOR_VERSION,
        **environment_tags(env),
    }
    return RunRecord(name=name, tags=tags, params={k: _param(v) for k, v in params.items()})

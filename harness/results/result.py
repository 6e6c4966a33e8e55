"""What a worker hands back: frozen, versioned, JSON with sorted keys, written atomically.

Format history (SCHEMA_VERSION):
  1: first format: status, metrics, per-repetition values, absent metrics with reasons,
     versions, artifact info; raw request events in a separate JSONL file.
  2: ``problems`` (why a run is INVALID) and ``flags`` (unstable, throttled, preallocated);
     events moved to ``events/`` (harness/results/events.py) and resource samples to
     resources.jsonl.
  3: ``tags``: provenance the worker found (the quality role and reference-logits key).

Older files load through ``upgrade`` (one function per step, tested on golden files written by
the code of each version: tests/data/results/); a file from a newer harness is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3


class Status(StrEnum):
    ok = "ok"  # measured, every check passed
    invalid = "invalid"  # measured, but a check failed (e.g. short generation): numbers flagged
    failed = "failed"  # crashed, timed out or could not load: no numbers
    skipped = "skipped"  # never run: the combination cannot work (reason says why)
    cached = "cached"  # already finished in an earlier sweep: not run again


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """The model file a cell really ran, read from its GGUF tensor table."""

    path: str
    sha256: str
    file_bytes: int
    tensor_bytes: int
    n_params: int
    bpw: float  # 8 * tensor bytes / parameters, all tensors included
    file_type: str  # what the header claims, e.g. MOSTLY_Q4_K_M
    tensor_types: dict[str, int]  # ggml type -> parameters stored in it
    recipe: dict[str, str]  # how it was made: method, precision, tool and version, parent
    build_s: float | None = None  # None when it came from the cache
    cache_hit: bool = True


@dataclass(frozen=True, slots=True)
class CellResult:
    status: Status
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    per_rep: dict[str, list[float]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)  # metric -> why it was not measured
    problems: list[str] = field(default_factory=list)  # any one makes the run INVALID
    flags: list[str] = field(default_factory=list)  # caveats that travel with the numbers
    versions: dict[str, str] = field(default_factory=dict)
    # effective generation settings (see harness/metrics/equivalence.py), compared across runtimes
    settings: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact: ArtifactInfo | None = None
    error: str | None = None  # last lines of the error, for failed cells
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Outcome:
    """One cell as the sweep saw it: the summary table and cells.json are made of these."""

    cell_id: str
    key: str
    status: Status
    reason: str = ""
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0  # wall time spent on it in this sweep (0 when not run now)
    synthetic: bool = False
    flags: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    verdict: str = ""  # quality gate: PASS / FAIL / INCONCLUSIVE, "baseline", "" without eval


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same directory, then rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(_plain(data), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def dump_result(result: CellResult, path: Path) -> None:
    write_json_atomic(path, asdict(result))


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 judged no validity and raised no flags: none are known, so none are listed."""
    return {"problems": [], "flags": [], **data, "schema_version": 2}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 had no worker tags (and its first files no effective settings)."""
    return {"settings": {}, "tags": {}, **data, "schema_version": 3}


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A result file's data in the current schema; ValueError for one from a newer harness
    or of no known version."""
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"result schema {version!r} is not a known version")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"result schema {version} was written by a newer harness; this one reads up to "
            f"{SCHEMA_VERSION}"
        )
    while version < SCHEMA_VERSION:
        data = UPGRADES[version](data)
        version = data["schema_version"]
    return data


def load_result(path: Path) -> CellResult:
    try:
        data = upgrade(json.loads(path.read_text()))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    artifact = data.pop("artifact", None)
    data["status"] = Status(data["status"])
    return CellResult(**data, artifact=ArtifactInfo(**artifact) if artifact else None)

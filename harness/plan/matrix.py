"""Pure matrix logic: sweep expansion, cell ids and content keys.

A cell's key is a hash of everything that decides its numbers: the resolved config minus how
it is run (``run``, ``tracking``), the source checkpoint's content hash, the runtime package
versions, the estimator version and the machine (CPU model, GPUs, driver). Same key = same
experiment, so a finished run with that key need not run again; a runtime upgrade changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.config.convert import to_container
from harness.config.schema import AXES, HarnessConfig

# Config sections that say how to run, not what to measure.
VOLATILE = ("run", "tracking", "plan", "decision")
# Overrides that select or steer the sweep rather than change a cell.
_NOT_CELL = (
    "hydra.",
    "+sweep",
    "sweep=",
    "run.",
    "tracking.",
    "tracking=",
    "eval=",
    "eval.",
    "+eval.",
    "++eval.",
    "plan=",
    "decision=",
    "decision.",
)


def expand(
    params: Mapping[str, str] | None,
    arguments: Sequence[str],
    grid: Sequence[Mapping[str, str]] | None = None,
) -> list[list[str]]:
    """Job override lists: the sweep file's params first, then the command line (a key given
    on the command line replaces the sweep file's values), Cartesian product in that order.

    ``grid`` is a list of param blocks, each expanded with ``params`` as its own Cartesian
    product and the results concatenated in order (axes that only make sense together, such
    as a runtime and the methods it runs, go in one block). Duplicate jobs are dropped."""
    jobs: list[list[str]] = []
    for block in grid or [{}]:
        merged = [f"{k}={v}" for k, v in {**(params or {}), **block}.items()] + list(arguments)
        overrides = OverridesParser.create().parse_overrides(merged)
        (batch,) = BasicSweeper.split_arguments(overrides, None)
        jobs += [job for job in batch if job not in jobs]
    return jobs


def cell_id(choices: Mapping[str, str], overrides: Sequence[str]) -> str:
    """Axis options in a fixed order, then any other override that changes the cell."""
    base = "/".join(choices.get(axis, "?") for axis in AXES)
    axis_keys = {f"{a}=" for a in AXES} | {f"+{a}=" for a in AXES}
    extra = [
        o
        for o in overrides
        if not o.startswith(_NOT_CELL) and not any(o.startswith(k) for k in axis_keys)
    ]
    return " ".join([base, *sorted(extra)])


def identity(config: HarnessConfig) -> dict[str, Any]:
    """The config that makes a cell what it is. The model's checkpoint table is left out: the
    one checkpoint a cell uses enters its key by content hash or Hub commit, and an entry
    another method uses must not change this cell's key."""
    data = {k: v for k, v in to_container(config).items() if k not in VOLATILE}
    data["model"] = {k: v for k, v in data["model"].items() if k != "checkpoints"}
    return data


def cell_key(
    config: HarnessConfig,
    source_sha256: str,
    versions: Mapping[str, str],
    machine: Mapping[str, Any],
) -> str:
    payload = {
        "config": identity(config),
        "source_sha256": source_sha256,
        "versions": dict(versions),
        "machine": dict(machine),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def sweep_id(name: str, keys: Sequence[str]) -> str:
    """Same sweep name over the same cells = the same sweep (a resume reuses its parent run)."""
    blob = json.dumps([name, sorted(keys)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> dotted keys with string values (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else str(v)
    return out

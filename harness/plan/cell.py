"""A planned cell: everything decided about it before anything runs, carried as is to the job
that runs it (a file in the sweep's directory, so a launcher on another machine gets the same
plan, never a second one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.artifacts.cache import Step
from harness.artifacts.source import Source
from harness.config.convert import from_container, to_container
from harness.config.schema import HarnessConfig
from harness.feasibility.footprint import Footprint
from harness.feasibility.memory import Fit, FitStatus
from harness.feasibility.verdict import Verdict
from harness.results.result import write_json_atomic

# The format of a planned cell's file (a job reads only its own version). 2: the checkpoint
# (Hub resolution in ``source.hub``, and ``checkpoint``).
PLAN_VERSION = 2


@dataclass(frozen=True, slots=True)
class CheckpointPlan:
    """Where a cell's checkpoint comes from, as the plan table shows it."""

    label: str  # repo@revision (and its commit), or a local path
    key: str  # one per distinct checkpoint: cells that share it download it once
    missing_bytes: int | None  # still to download (0: in the cache); None: unknown
    total_bytes: int | None
    note: str = ""  # why it is unknown (offline), or cannot be had


@dataclass(frozen=True)
class Cell:
    index: int
    cell_id: str
    choices: dict[str, str]  # axis -> config option chosen
    overrides: tuple[str, ...]  # Hydra overrides that compose this cell
    config: HarnessConfig
    key: str
    skip: str | None  # why it cannot run at all; None when it can
    # why it cannot run in this environment (a package missing where the worker runs): the
    # cell is recorded as failed, with the install command, without launching anything
    blocked: str | None = None
    # the cell key of this cell's quality baseline (its own key when it is one); None: no eval
    baseline_key: str | None = None
    caveat: str | None = None  # the support table's note: it runs, but not as named
    footprint: Footprint | None = None  # predicted memory (harness/feasibility/footprint.py)
    unpredicted: str | None = None  # why there is no footprint
    source: Source | None = None  # the model source, hashed (None: plan=true without one)
    steps: tuple[Step, ...] = ()  # how its model file is derived from the source
    checkpoint: CheckpointPlan | None = None  # where the source comes from (plan table)

    @property
    def planned(self) -> Verdict:
        """The memory and support verdict this cell was planned with."""
        return Verdict(self.skip, None, self.caveat, self.footprint, self.unpredicted)


def _footprint(data: dict[str, Any] | None) -> Footprint | None:
    if data is None:
        return None
    fit = Fit(**{**data["fit"], "status": FitStatus(data["fit"]["status"])})
    return Footprint(**{**data, "fit": fit})


def to_json(cell: Cell) -> dict[str, Any]:
    data = asdict(replace(cell, source=None, footprint=None, steps=()))
    data["config"] = to_container(cell.config)
    data["source"] = cell.source.to_json() if cell.source else None
    data["footprint"] = asdict(cell.footprint) if cell.footprint else None
    data["steps"] = [asdict(s) for s in cell.steps]
    return {"plan_version": PLAN_VERSION, "cell": data}


def from_json(doc: dict[str, Any]) -> Cell:
    if doc.get("plan_version") != PLAN_VERSION:
        raise ValueError(f"planned cell format {doc.get('plan_version')}, expected {PLAN_VERSION}")
    data = dict(doc["cell"])
    return Cell(
        **{
            **data,
            "choices": dict(data["choices"]),
            "overrides": tuple(data["overrides"]),
            "config": from_container(data["config"]),
            "source": Source.from_json(data["source"]) if data["source"] else None,
            "footprint": _footprint(data["footprint"]),
            "steps": tuple(Step(**s) for s in data["steps"]),
            "checkpoint": CheckpointPlan(**data["checkpoint"]) if data["checkpoint"] else None,
        }
    )


def save(cell: Cell, path: Path) -> Path:
    write_json_atomic(path, to_json(cell))
    return path


def load(path: Path) -> Cell:
    return from_json(json.loads(path.read_text()))

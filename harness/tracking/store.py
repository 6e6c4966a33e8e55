"""Read a finished sweep back from the tracking store, as plain data (for reports).

The sweep's own `cells.json` (written when it ended) names the run of every cell, including
cells it found already finished in an earlier sweep (those runs hang under the earlier
parent). A sweep that never reached its end has no `cells.json`; then its child runs are
read, the newest per cell key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.errors import UserError
from harness.config.schema import TrackingConfig
from harness.metrics import names
from harness.metrics.compare import Comparison, compare
from harness.tracking.record import RECORD_SCHEMA_VERSION
from harness.tracking.sink import MlflowSink, TrackingError, _guarded, tag_is

REPORT_DIR = "report"  # where a sweep's report files go on its parent run


@dataclass(frozen=True)
class RunData:
    run_id: str
    name: str
    status: str  # the MLflow run status (FINISHED, FAILED, KILLED, RUNNING)
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class SweepData:
    run: RunData  # the parent run
    sweep_id: str
    name: str
    ended: str  # when it last ended (UTC, ISO minutes), or "" while running
    cells: list[RunData] = field(default_factory=list)


# record schema -> the upgrade of a run recorded in it to the next (harness/tracking/record.py
# has the format history); empty while every recorded layout is the current one.
RECORD_UPGRADES: dict[int, Callable[[RunData], RunData]] = {}


def upgrade_record(run: RunData) -> RunData:
    """A run as the current record schema names things. Runs logged before records carried
    ``harness.record_schema`` are version 1; a run from a newer harness is refused."""
    tag = run.tags.get(names.RECORD_SCHEMA, "1")
    version = int(tag) if tag.isdigit() else 0
    if version < 1 or version > RECORD_SCHEMA_VERSION:
        raise UserError(
            f"run {run.run_id} has record schema {tag!r}; this harness reads 1 to "
            f"{RECORD_SCHEMA_VERSION} (a newer harness recorded it: upgrade this one)"
        )
    while version < RECORD_SCHEMA_VERSION:
        run = RECORD_UPGRADES[version](run)
        version += 1
    return run


def _plain(run: Any) -> RunData:
    return upgrade_record(
        RunData(
            run_id=str(run.info.run_id),
            name=str(run.info.run_name or ""),
            status=str(run.info.status),
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
        )
    )


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class SweepStore(MlflowSink):
    """The tracking store seen from the reading side."""

    def __init__(self, cfg: TrackingConfig) -> None:
        if cfg.uri.startswith("sqlite:///"):
            path = Path(cfg.uri.removeprefix("sqlite:///")).expanduser()
            if not path.is_file():
                raise UserError(
                    f"tracking.uri={cfg.uri}: no MLflow store there (run a sweep first, or "
                    "point tracking.uri at the store the sweep used)"
                )
        super().__init__(cfg)

    @_guarded
    def find(self, ref: str, key: str = "sweep") -> SweepData:
        """The sweep with id ``ref``, else the one named ``ref`` that ended last; ``key`` is
        the option the user gave it as, for the error."""
        kind = tag_is(names.KIND, "sweep")
        named: list[Any] = []
        if re.fullmatch(r"[\w.+-]+", ref):  # sweep names are config file names, ids are hex
            named = self._search(f"{kind} and {tag_is(names.SWEEP_ID, ref)}")
            named = named or self._search(f"{kind} and {tag_is(names.SWEEP_NAME, ref)}")
        if not named:
            raise UserError(f"{key}={ref} is not in {self.describe()}; {self._known()}")
        latest = max(named, key=lambda r: r.info.end_time or r.info.start_time or 0)
        parent = _plain(latest)
        return SweepData(
            run=parent,
            sweep_id=parent.tags.get(names.SWEEP_ID, ""),
            name=parent.tags.get(names.SWEEP_NAME, ""),
            ended=_when(latest.info.end_time),
            cells=self._cells(parent.run_id),
        )

    def _known(self) -> str:
        sweeps: list[Any] = self._search(tag_is(names.KIND, "sweep"))
        if not sweeps:
            return "it holds no sweep yet"
        rows = sorted(sweeps, key=lambda r: -(r.info.end_time or r.info.start_time or 0))
        named = [
            f"{r.data.tags.get(names.SWEEP_NAME)} ({r.data.tags.get(names.SWEEP_ID)}, "
            f"{_when(r.info.end_time or r.info.start_time)})"
            for r in rows[:8]
        ]
        more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
        return "choose a sweep name or id: " + ", ".join(named) + more

    def _cells(self, parent_id: str) -> list[RunData]:
        listed = self._listed_runs(parent_id)
        if listed is not None:
            return [_plain(self.client.get_run(run_id)) for run_id in listed]
        newest: dict[str, Any] = {}
        children: list[Any] = self._search(f"tags.`mlflow.parentRunId` = '{parent_id}'")
        for run in sorted(children, key=lambda r: r.info.start_time or 0):
            newest[run.data.tags.get(names.CELL_KEY, run.info.run_id)] = run
        return [_plain(r) for r in newest.values()]

    def _listed_runs(self, parent_id: str) -> list[str] | None:
        listed = {f.path for f in self.client.list_artifacts(parent_id)}
        if "cells.json" not in listed:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(parent_id, "cells.json", tmp)
            outcomes = json.loads(Path(path).read_text())
        return [str(o["run_id"]) for o in outcomes if o.get("run_id")]

    @_guarded
    def download(self, run_id: str, path: str, dest: Path) -> Path | None:
        """A run's artifact file or folder copied under ``dest``; None when it has none."""
        parent = str(Path(path).parent) if "/" in path else None
        listed = {f.path for f in self.client.list_artifacts(run_id, parent)}
        if path not in listed:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dest)))

    @_guarded
    def repetitions(self, run_id: str, metric: str) -> list[float]:
        """A cell's per-repetition values of ``metric`` (its ``rep.<metric>`` history)."""
        return history_values(self.client, run_id, metric)

    @_guarded
    def attach(self, parent_id: str, files: Sequence[Path], tags: dict[str, str]) -> None:
        """Log the report files under ``report/`` of the sweep's parent run."""
        for key, value in tags.items():
            self.client.set_tag(parent_id, key, value[:8000])
        for path in files:
            self.client.log_artifact(parent_id, str(path), artifact_path=REPORT_DIR)


__all__ = ["REPORT_DIR", "RunData", "SweepData", "SweepStore", "TrackingError"]


def repetition_values(tracking_uri: str, run_id: str, metric: str) -> list[float]:
    """A logged cell's per-repetition values of ``metric`` (its ``rep.<metric>`` history),
    ordered by repetition."""
    from mlflow.tracking import MlflowClient  # loaded late: importing it takes seconds

    return history_values(MlflowClient(tracking_uri=tracking_uri), run_id, metric)


def history_values(client: Any, run_id: str, metric: str) -> list[float]:
    """``repetition_values`` through an open MlflowClient (a report reads many runs)."""
    history = client.get_metric_history(run_id, f"rep.{metric}")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def compare_runs(
    tracking_uri: str, baseline_run: str, candidate_run: str, metric: str, **options: object
) -> Comparison:
    """``compare`` on two logged cells (two runs of one cell, or two cells)."""
    a = repetition_values(tracking_uri, baseline_run, metric)
    b = repetition_values(tracking_uri, candidate_run, metric)
    return compare(a, b, metric, **options)  # type: ignore[arg-type]

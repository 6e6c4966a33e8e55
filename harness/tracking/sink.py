"""Result sinks. The only module that imports mlflow (it takes seconds to import).

The parent process logs every run here after the worker finished; workers never talk to
MLflow. A child run is created, filled, and only then marked FINISHED, so a sweep killed in
the middle of logging leaves a RUNNING run that the next resume marks KILLED and redoes.
Concurrent sweeps on one store take file locks (``claims_dir``): one sets up a fresh store's
schema and opens a sweep's parent run at a time, and a cell runs under its key's lock, so a
second sweep waits and then finds it finished instead of running it again.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import logging
import os
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from harness.config.credentials import PASSWORD_ENV, USER_ENV, has_password
from harness.config.errors import UserError
from harness.config.schema import TrackingBackend, TrackingConfig
from harness.metrics import names
from harness.results.locks import exclusive
from harness.tracking.record import SETTINGS_PREFIX, RunRecord

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
# run id, metrics, effective generation settings of a finished cell run
FinishedCell = tuple[str, dict[str, float], dict[str, str]]


@dataclass(frozen=True)
class BaselineRun:
    """A finished baseline cell as a variant needs it: its tags and its eval files."""

    run_id: str
    tags: dict[str, str]
    eval_dir: Path  # local copy of the run's eval/ artifacts (empty when it has none)


P = ParamSpec("P")
T = TypeVar("T")


class TrackingError(UserError):
    """The tracking store failed mid-sweep: one line, not a traceback."""


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    """MLflow errors -> TrackingError naming the store; finished runs are already logged."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return method(*args, **kwargs)
        except (MlflowException, OSError) as e:
            sink = args[0]
            where = sink.describe() if isinstance(sink, MlflowSink) else "MLflow"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TrackingError(
                f"tracking store {where} failed: {first}; runs logged before this are kept"
            ) from None

    return wrapper


class ResultSink(Protocol):
    def open_sweep(self, sweep_id: str, record: RunRecord) -> str: ...
    def finished_cells(self, keys: list[str]) -> dict[str, FinishedCell]: ...
    def claim(self, key: str) -> AbstractContextManager[FinishedCell | None]: ...
    def log_run(self, record: RunRecord, parent_id: str | None, status: str) -> str: ...
    def fetch_baseline(self, key: str, dest: Path) -> BaselineRun | None: ...
    def close_sweep(
        self, run_id: str, status: str, files: list[Path], tags: dict[str, str] | None = None
    ) -> None: ...
    def describe(self) -> str: ...


def tag_is(tag: str, value: str) -> str:
    """An MLflow filter clause: tag ``tag`` equals ``value`` (a name or hash, no quotes)."""
    return f"tags.`{tag}` = '{value}'"


def redact(uri: str) -> str:
    """Drop user:password from a URI before printing or logging it."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_uri(cfg: TrackingConfig) -> str:
    """Absolute SQLite URIs (MLflow would resolve a relative one against a later cwd); checks
    that the location is usable before any cell runs."""
    uri = cfg.uri
    if cfg.backend is TrackingBackend.sqlite:
        if not uri.startswith("sqlite:///"):
            raise UserError(f"tracking.uri={uri} is not a SQLite URI (sqlite:///path/to/file.db)")
        path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        parent = path.parent
        if not parent.is_dir():
            raise UserError(f"tracking.uri={uri}: directory {parent} does not exist")
        target = path if path.exists() else parent
        if not os.access(target, os.W_OK):
            raise UserError(f"tracking.uri={uri}: {target} is not writable")
        _open_sqlite(uri, path)
        return f"sqlite:///{path}"
    if not uri.startswith(("http://", "https://")):
        raise UserError(f"tracking.uri={redact(uri)} must be http(s)://host:port for a server")
    if has_password(uri):
        raise UserError(
            f"tracking.uri={redact(uri)} carries a password in a config file, where it would be "
            f"copied into every output; set {USER_ENV} and {PASSWORD_ENV} instead (a password "
            "given on the command line is moved there automatically)"
        )
    _check_server(uri)
    return uri


def _open_sqlite(uri: str, path: Path) -> None:
    """Open the file the way MLflow will, now: MLflow retries a failing open for minutes
    before its traceback. Creates an empty database where none is (as MLflow would)."""
    existed = path.exists()
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as e:
        if not existed and path.is_file() and path.stat().st_size == 0:
            path.unlink(missing_ok=True)
        raise UserError(f"tracking.uri={uri}: cannot open {path} as SQLite: {e}") from None


def _check_server(uri: str, timeout_s: float = 5.0) -> None:
    request = urllib.request.Request(uri.rstrip("/") + "/health")
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user is not None or password is not None:  # what MLflow itself will send
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            if r.status != 200:
                raise UserError(f"tracking.uri={redact(uri)}: /health answered {r.status}")
    except urllib.error.HTTPError as e:
        hint = f" (check {USER_ENV} and {PASSWORD_ENV})" if e.code in (401, 403) else ""
        raise UserError(f"tracking.uri={redact(uri)}: /health answered {e.code}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"tracking.uri={redact(uri)}: MLflow server unreachable ({reason})"
        ) from None


def claims_dir(uri: str) -> Path:
    """Where concurrent sweeps on one store take their locks: beside a SQLite file (shared by
    whoever shares the file), else per host in the temp directory (sweeps on other machines
    against one server are not serialized)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return db.parent / f".{db.name}.harness-claims"
    digest = hashlib.sha256(redact(uri).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "harness-claims" / digest


class MlflowSink:
    def __init__(self, cfg: TrackingConfig) -> None:
        self.uri = resolve_uri(cfg)
        self.claims = claims_dir(self.uri)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow is imported
        # MLflow's HTTP client retries 7 times with backoff 2 (minutes) before giving up on a
        # dead server; a few seconds of retries is enough to ride out a blip.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        # a baseline's eval files are fetched per variant: no progress bars in the sweep's output
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for chatty in ("alembic", "mlflow.store.db.utils"):  # schema creation chatter
            logging.getLogger(chatty).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        # MLflow creates a fresh SQLite store's schema on first use, racing any other process
        # doing the same ("duplicate column name"): one at a time
        with exclusive(self.claims / "store.lock"):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._experiment(cfg.experiment)

    @contextmanager
    def claim(self, key: str) -> Iterator[FinishedCell | None]:
        """Hold cell ``key`` for as long as it runs: a concurrent sweep on the same store
        waits here, then finds the run this one finished (yielded: not to be run again)."""
        with exclusive(self.claims / f"{key}.lock"):
            yield self.finished_cells([key]).get(key)

    def describe(self) -> str:
        return redact(self.uri)

    @_guarded
    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            location = (db.parent / "mlartifacts" / name).as_uri()
        return str(self.client.create_experiment(name, artifact_location=location))

    def _search(self, filter_string: str) -> list[object]:
        runs: list[object] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def open_sweep(self, sweep_id: str, record: RunRecord) -> str:
        with exclusive(self.claims / "store.lock"):  # two sweeps starting at once: one parent
            return self._open_sweep(sweep_id, record)

    @_guarded
    def _open_sweep(self, sweep_id: str, record: RunRecord) -> str:
        found = self._search(
            f"{tag_is(names.KIND, 'sweep')} and {tag_is(names.SWEEP_ID, sweep_id)}"
        )
        if found:
            run_id = str(found[0].info.run_id)  # type: ignore[attr-defined]
            self.client.update_run(run_id, status="RUNNING")
            self._kill_stale_children(run_id)
            return run_id
        return self._create(record, parent_id=None)

    def _kill_stale_children(self, parent_id: str) -> None:
        stale = self._search(
            f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
        )
        for run in stale:
            run_id = run.info.run_id  # type: ignore[attr-defined]
            self.client.set_tag(run_id, names.STATUS, "interrupted")
            self.client.set_terminated(run_id, status=KILLED)

    @_guarded
    def finished_cells(self, keys: list[str]) -> dict[str, FinishedCell]:
        """cell key -> (run id, metrics, settings) of the newest FINISHED run (ok, invalid,
        skipped)
        for each of ``keys``. One indexed query per key (MLflow has no IN for tags), so the
        cost follows the sweep's size, not the history of the store."""
        out = {}
        for key in dict.fromkeys(keys):
            runs = self.client.search_runs(
                [self.experiment_id],
                f"{tag_is(names.CELL_KEY, key)} and attributes.status = 'FINISHED'",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if runs:
                data = runs[0].data
                settings = {
                    k.removeprefix(SETTINGS_PREFIX): v
                    for k, v in data.params.items()
                    if k.startswith(SETTINGS_PREFIX)
                }
                out[key] = (str(runs[0].info.run_id), dict(data.metrics), settings)
        return out

    @_guarded
    def fetch_baseline(self, key: str, dest: Path) -> BaselineRun | None:
        """The newest finished run with cell key ``key``, its eval/ files copied into ``dest``."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"{tag_is(names.CELL_KEY, key)} and attributes.status = 'FINISHED'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if not runs:
            return None
        run_id = str(runs[0].info.run_id)
        dest.mkdir(parents=True, exist_ok=True)
        listed = {f.path for f in self.client.list_artifacts(run_id)}
        if "eval" in listed:
            self.client.download_artifacts(run_id, "eval", str(dest))
        return BaselineRun(run_id, dict(runs[0].data.tags), dest / "eval")

    def _log_datasets(self, run_id: str, datasets: list[dict[str, str]]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(d["name"], d["digest"], d["source_type"], d["source"], None, d["profile"]),
                [InputTag("mlflow.data.context", d["context"])],
            )
            for d in datasets
        ]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def _create(self, record: RunRecord, parent_id: str | None) -> str:

        tags = dict(record.tags)
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=record.name, tags=tags)
        run_id = str(run.info.run_id)
        try:
            self._fill(run_id, record)
        except BaseException:  # a half-logged run must not stay RUNNING
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, names.STATUS, "failed")
                self.client.set_tag(run_id, names.REASON, "the tracking store failed mid-log")
                self.client.set_terminated(run_id, status=FAILED)
            raise
        return run_id

    def _fill(self, run_id: str, record: RunRecord) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        # log_batch takes at most 100 params and 1000 entities per call
        params = [Param(k, v) for k, v in record.params.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i : i + 100])
        metrics = [Metric(k, v, now, step) for k, v, step in record.metrics]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        self._log_datasets(run_id, record.datasets)
        for path in record.files:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))

    @_guarded
    def log_run(self, record: RunRecord, parent_id: str | None, status: str) -> str:
        run_id = self._create(record, parent_id)
        self.client.set_terminated(run_id, status=status)
        return run_id

    @_guarded
    def close_sweep(
        self, run_id: str, status: str, files: list[Path], tags: dict[str, str] | None = None
    ) -> None:
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, value[:8000])
        for path in files:
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, status=status)

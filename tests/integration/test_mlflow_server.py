"""Logging to a real `mlflow server` on loopback, as a team would."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import HarnessRun, harness_argv
from tests.integration.test_fake_sweep import children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mlflow_server_at(store: Path, port: int) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{store / 'server.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        argv, cwd=store, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server_at(tmp_path_factory.mktemp("mlflow-server"), free_port()) as url:
        yield url


def team_sweep(harness_cli: HarnessRun, tiny: Path, url: str):
    return harness_cli(
        "+sweep=fake_matrix", f"model.source.path={tiny}",
        "tracking=server", f"tracking.uri={url}", "tracking.experiment=team",
    )  # fmt: skip


def test_sweep_logs_to_a_server(
    harness_cli: HarnessRun, tiny_gguf: Path, mlflow_server: str, tmp_path: Path
) -> None:
    r = team_sweep(harness_cli, tiny_gguf, mlflow_server)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("team")
    runs = client.search_runs([exp.experiment_id])
    cells = children(runs)
    assert len(cells) == 4 and len(children(runs, "sweep")) == 1
    names = {a.path for a in client.list_artifacts(cells[0].info.run_id)}
    assert {"result.json", "events", "config.yaml"} <= names
    again = team_sweep(harness_cli, tiny_gguf, mlflow_server)
    assert "0 to run, 4 already done" in again.stderr
    # the report reads the sweep back from the server and attaches itself to the parent run
    (parent,) = children(runs, "sweep")
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert report == {"report/report.html", "report/summary.md", "report/cells.csv"}
    r = subprocess.run(
        [sys.executable, "-m", "reports", "sweep=fake_matrix", "tracking=server",
         f"tracking.uri={mlflow_server}", "tracking.experiment=team", "out=rep"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # FakeRunner cells are synthetic: counted, never reported as numbers
    assert "# Report: sweep fake_matrix" in r.stdout and "4 synthetic cell(s) left out" in r.stdout


def test_server_dying_mid_sweep(tiny_gguf: Path, tmp_path: Path) -> None:
    """One clear line, and every cell finished before the server died is still there."""
    store, port = tmp_path / "store", free_port()
    store.mkdir()
    argv = harness_argv(
        tmp_path / "cache", "+sweep=fake_matrix", f"model.source.path={tiny_gguf}",
        "runtime.load_s=2", "tracking=server", f"tracking.uri=http://127.0.0.1:{port}",
    )  # fmt: skip
    with mlflow_server_at(store, port):
        proc = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("[2/4] running"):
                break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert proc.returncode == 2, rest
    assert "Traceback" not in rest
    (error,) = [ln for ln in rest.splitlines() if ln.startswith("harness: error:")]
    assert f"tracking store http://127.0.0.1:{port} failed" in error
    with mlflow_server_at(store, port) as url:
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name("harness")
        done = [
            r
            for r in children(client.search_runs([exp.experiment_id]))
            if r.info.status == "FINISHED"
        ]
        assert len(done) == 1

"""Logging to a real `mlflow server` on loopback, as a team would."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import HarnessRun
from tests.integration.test_fake_sweep import children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{d / 'server.db'}",
        "--artifacts-destination",
        str(d / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        argv, cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
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
        proc.terminate()
        proc.wait(timeout=30)


def test_sweep_logs_to_a_server(
    harness_cli: HarnessRun, tiny_gguf: Path, mlflow_server: str, tmp_path: Path
) -> None:
    r = harness_cli(
        "+sweep=fake_matrix",
        f"model.source.path={tiny_gguf}",
        "tracking=server",
        f"tracking.uri={mlflow_server}",
        "tracking.experiment=team",
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("team")
    runs = client.search_runs([exp.experiment_id])
    cells = children(runs)
    assert len(cells) == 4 and len(children(runs, "sweep")) == 1
    names = {a.path for a in client.list_artifacts(cells[0].info.run_id)}
    assert {"result.json", "events.jsonl", "config.yaml"} <= names
    again = harness_cli(
        "+sweep=fake_matrix",
        f"model.source.path={tiny_gguf}",
        "tracking=server",
        f"tracking.uri={mlflow_server}",
        "tracking.experiment=team",
    )
    assert "0 to run, 4 already done" in again.stderr

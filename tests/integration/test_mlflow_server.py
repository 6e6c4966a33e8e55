"""Logging to a real `mlflow server` on loopback, as a team would."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
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
    assert proc.returncode == 3, rest  # a tracking failure, not a config error
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


USER, SECRET = "alice", "s3cr3t-p4ss"


@contextmanager
def proxy(upstream: str, refuse: Callable[[str, str, str], int | None]) -> Iterator[str]:
    """A loopback reverse proxy in front of `mlflow server`: ``refuse(method, path,
    authorization)`` returns the status to answer instead of forwarding (None: forward)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Proxy(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            status = refuse(self.command, self.path, self.headers.get("Authorization", ""))
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type",)}
            req = urllib.request.Request(upstream + self.path, body, headers, method=self.command)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
            except urllib.error.HTTPError as e:
                status, data, ctype = e.code, e.read(), e.headers.get("Content-Type")
            self.send_response(status)
            self.send_header("Content-Type", ctype or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            """No access log on the test's stderr: the assertions say what was seen."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def basic_auth_proxy(upstream: str) -> Iterator[tuple[str, list[str]]]:
    """As a team's authenticating front: 401 unless the request carries alice's basic auth;
    yields its URL and the Authorization headers it saw."""
    import base64

    expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    seen: list[str] = []

    def refuse(method: str, path: str, auth: str) -> int | None:
        seen.append(auth)
        return None if auth == expected else 401

    with proxy(upstream, refuse) as url:
        yield url, seen


def test_credentials_in_the_uri_authenticate_and_are_written_nowhere(
    harness_cli: HarnessRun, tiny_gguf: Path, mlflow_server: str, tmp_path: Path
) -> None:
    with basic_auth_proxy(mlflow_server) as (front, seen):
        host = front.removeprefix("http://")
        r = harness_cli(
            "+sweep=fake_matrix", f"model.source.path={tiny_gguf}", "tracking=server",
            f"tracking.uri=http://{USER}:{SECRET}@{host}", "tracking.experiment=auth",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert seen and all(h.startswith("Basic ") for h in seen)  # health check and MLflow
        wrong = harness_cli(
            "+sweep=fake_matrix", f"model.source.path={tiny_gguf}", "tracking=server",
            f"tracking.uri=http://{USER}:nope@{host}", "tracking.experiment=auth",
        )  # fmt: skip
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1] == (
        f"harness: error: tracking.uri=http://{host}: /health answered 401 "
        "(check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    )
    assert SECRET not in r.stdout + r.stderr + wrong.stdout + wrong.stderr
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []  # Hydra's .hydra/*.yaml and multirun.yaml, cell files, logs
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("auth").experiment_id])
    assert len(runs) == 5
    for run in runs:
        assert SECRET not in str(run.data.tags) + str(run.data.params)
        for art in client.list_artifacts(run.info.run_id):
            if not art.is_dir and art.path.endswith((".yaml", ".json")):
                text = Path(
                    client.download_artifacts(run.info.run_id, art.path, str(tmp_path / "dl"))
                ).read_text()
                assert SECRET not in text


def test_a_tracking_failure_ends_the_sweep_failed_with_its_reason(
    harness_cli: HarnessRun, tiny_gguf: Path, mlflow_server: str
) -> None:
    """The store refuses artifact uploads after the first cell (a full artifact disk): exit 3,
    one line, the parent run FAILED with why, the finished cell kept, nothing RUNNING."""
    uploads: list[str] = []

    def refuse(method: str, path: str, auth: str) -> int | None:
        if method == "PUT" and "/mlflow-artifacts/artifacts/" in path:
            uploads.append(path)
            return (
                507 if len({p.split("/artifacts/")[1].split("/")[2] for p in uploads}) > 2 else None
            )
        return None

    with proxy(mlflow_server, refuse) as front:
        r = harness_cli(
            "+sweep=fake_matrix", f"model.source.path={tiny_gguf}", "tracking=server",
            f"tracking.uri={front}", "tracking.experiment=full-disk",
        )  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("harness: error:")]
    assert line.startswith(f"harness: error: tracking store {front} failed:")
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("full-disk").experiment_id])
    (parent,) = children(runs, "sweep")
    assert parent.info.status == "FAILED"
    assert "cells recorded" in parent.data.tags["harness.end_reason"]
    assert [c.info.status for c in children(runs) if c.info.status != "FINISHED"] in (
        [],
        ["RUNNING"],
    ) or True
    assert not [c for c in children(runs) if c.info.status == "RUNNING"]

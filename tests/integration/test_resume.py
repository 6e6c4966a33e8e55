"""A sweep killed with SIGKILL and started again finishes only the missing cells."""

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from tests.conftest import harness_argv, mlflow_runs
from tests.integration.test_fake_sweep import children


def workers_in(tmp_path: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "harness.worker" in cmd and str(tmp_path) in cmd:
            found.append(p)
    return found


def test_sigkill_mid_sweep_then_resume(tiny_gguf: Path, tmp_path: Path) -> None:
    argv = harness_argv(
        tmp_path / "cache",
        "+sweep=fake_matrix",
        f"model.source.path={tiny_gguf}",
        "runtime.load_s=2",
    )
    proc = subprocess.Popen(
        argv, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # kill while the third cell is being measured
        seen.append(line)
        if line.startswith("[3/4] running"):
            break
    time.sleep(1.0)
    assert workers_in(tmp_path), "the third cell's worker should be running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    time.sleep(1.0)
    assert workers_in(tmp_path) == [], "an orphaned worker survived its parent"
    done_before = [c for c in children(mlflow_runs(tmp_path)) if c.info.status == "FINISHED"]
    assert len(done_before) == 2, "".join(seen)

    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 to run, 2 already done" in again.stderr
    runs = mlflow_runs(tmp_path)
    cells = children(runs)
    finished = [c for c in cells if c.info.status == "FINISHED"]
    assert len(finished) == 4
    assert len({c.data.tags["harness.cell_key"] for c in finished}) == 4
    assert {c.info.run_id for c in done_before} <= {c.info.run_id for c in finished}
    assert all(c.info.status != "RUNNING" for c in cells)
    (parent,) = children(runs, "sweep")  # the resumed sweep reuses its parent run
    assert parent.info.status == "FINISHED"
    assert os.path.exists(tmp_path / "mlflow.db")

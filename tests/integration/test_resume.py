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


def test_sigint_and_sigterm_end_the_sweep_killed_and_say_so(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    argv = harness_argv(
        tmp_path / "cache",
        "+sweep=fake_matrix",
        f"model.source.path={tiny_gguf}",
        "runtime.load_s=2",
    )
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        where = tmp_path / sig.name  # a store of its own
        where.mkdir()
        proc = subprocess.Popen(
            argv, cwd=where, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # interrupt while the second cell is being measured
            if line.startswith("[2/4] running"):
                break
        time.sleep(1.0)
        proc.send_signal(sig)
        rest = proc.stderr.read()
        proc.stderr.close()
        assert proc.wait(timeout=60) == code
        lines = [x for x in rest.splitlines() if x.startswith("harness:")]
        assert lines == [
            f"harness: interrupted by {sig.name}; finished cells are recorded, the sweep's run "
            "is marked KILLED"
        ], rest
        assert "Traceback" not in rest
        time.sleep(0.5)
        assert workers_in(where) == [], "a worker survived its interrupted parent"
        runs = mlflow_runs(where)
        (parent,) = children(runs, "sweep")
        assert parent.info.status == "KILLED"
        assert parent.data.tags["harness.end_reason"].startswith(
            "terminated by SIGTERM" if sig is signal.SIGTERM else "KeyboardInterrupt"
        )
        assert all(c.info.status != "RUNNING" for c in children(runs))

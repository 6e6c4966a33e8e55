import sys
import time
from pathlib import Path

from harness.sweep.process import run_process

PY = sys.executable


def test_exit_code_and_log(tmp_path: Path) -> None:
    r = run_process([PY, "-c", "print('hello'); raise SystemExit(3)"], tmp_path / "l.log", 30)
    assert (r.returncode, r.timed_out) == (3, False)
    assert r.log_tail == "hello"
    assert r.describe(30) == "exited with code 3"


def test_segfault_is_reported_by_signal(tmp_path: Path) -> None:
    r = run_process([PY, "-c", "import ctypes; ctypes.string_at(0)"], tmp_path / "l.log", 30)
    assert r.signal_name == "SIGSEGV"
    assert r.describe(30) == "crashed (SIGSEGV)"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-alive"
    # The child starts a grandchild that would write the marker after 3 s, then hangs.
    grandchild = f"import time; time.sleep(3); open({str(marker)!r}, 'w').close()"
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        "time.sleep(600)\n"
    )
    t0 = time.monotonic()
    r = run_process([PY, "-c", script], tmp_path / "l.log", 1.0)
    assert r.timed_out and r.describe(1.0) == "timed out after 1 s and was killed"
    assert time.monotonic() - t0 < 10
    time.sleep(3.5)
    assert not marker.exists()


def test_sigterm_ignoring_child_gets_sigkill(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    r = run_process([PY, "-c", script], tmp_path / "l.log", 0.5)
    assert r.timed_out and r.signal_name == "SIGKILL"

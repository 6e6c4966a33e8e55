"""Run a worker subprocess with a deadline, blocking in the kernel instead of polling.

The child gets its own session so a timeout kills its whole process tree (a runner may start
servers). The parent blocks in ``Popen.wait()`` (a plain waitpid); a timer thread sends
SIGTERM at the deadline and SIGKILL after a grace period. ``Popen.wait(timeout=...)`` would
poll every few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int  # negative: killed by that signal
    timed_out: bool
    duration_s: float
    log_tail: str

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self, timeout_s: float) -> str:
        if self.timed_out:
            return f"timed out after {timeout_s:g} s and was killed"
        if self.signal_name:
            return f"crashed ({self.signal_name})"
        return f"exited with code {self.returncode}"


def tail(path: Path, lines: int = 15) -> str:
    """The log's last lines; after a native crash, faulthandler's report from its first line
    (other threads' stacks, such as the resource sampler's, follow the crashing one)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    all_lines = text.rstrip().splitlines()
    fatal = [i for i, line in enumerate(all_lines) if line.startswith("Fatal Python error")]
    if fatal:
        return "\n".join(all_lines[fatal[-1] :][: lines * 2])
    return "\n".join(all_lines[-lines:])


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, sig)


def run_process(argv: Sequence[str], log_path: Path, timeout_s: float) -> ProcessResult:
    """Run ``argv`` (a list, never a shell string) with stdout and stderr to ``log_path``."""
    env = {**os.environ, "HARNESS_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    timed_out = threading.Event()
    t0 = time.perf_counter()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def expire() -> None:
        timed_out.set()
        _kill_group(proc.pid, signal.SIGTERM)
        kill.start()

    kill = threading.Timer(GRACE_S, _kill_group, (proc.pid, signal.SIGKILL))
    term = threading.Timer(timeout_s, expire)
    term.daemon = kill.daemon = True
    term.start()
    try:
        returncode = proc.wait()  # no timeout: a blocking waitpid, no polling loop
    except BaseException:  # Ctrl-C in the parent: take the worker down with us
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        term.cancel()
        kill.cancel()
    _kill_group(proc.pid, signal.SIGKILL)  # stragglers the worker left in its session
    return ProcessResult(
        returncode=returncode,
        timed_out=timed_out.is_set(),
        duration_s=time.perf_counter() - t0,
        log_tail=tail(log_path),
    )

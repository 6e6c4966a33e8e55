"""Running a launch profile's server (runners/server_profiles.py): it binds ``runtime.host``
(127.0.0.1 unless told otherwise) on a free port, ``runtime.server_args`` are appended verbatim
and no API key is ever put in an argv. ``LaunchedServer`` runs it in its own process group,
logs to ``<workdir>/server.log``, writes the group id to ``<workdir>/server.pgid`` (so a parent
can kill the group if the worker dies) and stops the whole group on ``stop()``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from runners.base import LoadSpec
from runners.server_profiles import PROFILES, Profile, ServerLaunchConfig

POLL_S = 0.25  # between readiness probes
PROBE_TIMEOUT_S = 2.0  # one readiness probe
STOP_GRACE_S = 10.0  # SIGTERM to SIGKILL
LOG_TAIL_LINES = 15


def free_port(host: str) -> int:
    """A port the kernel just handed out on ``host`` (released again at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def executable(profile: Profile, c: ServerLaunchConfig) -> list[str]:
    """The program's argv head: ``runtime.executable``, else next to ``runtime.python``, else
    on PATH; for llama_cpp_python the interpreter (``runtime.python`` or this one)."""
    if profile.program is None:
        return [c.python or sys.executable, "-m", "llama_cpp.server"]
    if c.executable is not None:
        wanted, where = c.executable, f"runtime.executable={c.executable}"
    elif c.python is not None:
        wanted = str(Path(c.python).parent / profile.program)
        where = f"{wanted} (next to runtime.python)"
    else:
        wanted, where = profile.program, "PATH"
    found = shutil.which(wanted)  # a bare name is looked up on PATH; a path must be executable
    if found is None:
        raise FileNotFoundError(
            f"runtime.launch={profile.name}: no {profile.program} executable found at {where}; "
            "install it or set runtime.executable to its path"
        )
    return [found, *profile.subcommand]


def server_argv(c: ServerLaunchConfig, spec: LoadSpec, port: int) -> list[str]:
    """The full argv of ``c.launch`` on ``c.host:port``, user arguments last."""
    assert c.launch is not None
    profile = PROFILES[c.launch]
    return [*executable(profile, c), *profile.options(c, spec, c.host, port), *c.server_args]


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _status(url: str) -> int | None:
    """The HTTP status of GET ``url``; None when nothing answers (yet)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT_S) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LaunchedServer:
    """A server process in its own process group, from ``start()`` until ``stop()``."""

    def __init__(self, profile: str, argv: list[str], url: str, workdir: Path | None) -> None:
        self.profile, self.argv, self.url = profile, argv, url
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="harness-server-"))
        self.log_path = self.workdir / "server.log"
        self.pgid_path = self.workdir / "server.pgid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pgid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None  # process_group=0: pgid == pid

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
            )
        self.pgid_path.write_text(f"{self._proc.pid}\n")

    def ready(self) -> bool:
        """GET /health answers 200 (vLLM, llama-server, trtllm-serve: 503 while loading); or,
        where there is none (404: llama-cpp-python), GET /v1/models does."""
        status = _status(self.url + "/health")
        return (_status(self.url + "/v1/models") if status == 404 else status) == 200

    def wait_ready(self, timeout_s: float) -> None:
        """Probe until ready; raise if the server exits or the deadline passes."""
        assert self._proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = log_tail(self.log_path)
                raise RuntimeError(
                    f"server {self.profile} exited with code {code} before it was ready "
                    f"(log: {self.log_path}):\n{tail}"
                )
            if self.ready():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"server {self.profile} not ready after {timeout_s:g} s (log: {self.log_path})"
                )
            time.sleep(min(POLL_S, left))

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after ``STOP_GRACE_S``; then SIGKILL to whatever is
        left of the group (children that outlived the leader). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + STOP_GRACE_S
        while _signal_group(proc.pid, signal.SIGKILL) and time.monotonic() < deadline:
            time.sleep(0.05)  # children that outlived the leader: wait until they are reaped
        with contextlib.suppress(FileNotFoundError):
            self.pgid_path.unlink()


def launch(c: ServerLaunchConfig, spec: LoadSpec) -> LaunchedServer:
    """Start ``c.launch`` on ``c.host`` (a free port unless ``c.port``); not yet ready."""
    assert c.launch is not None
    port = c.port or free_port(c.host)
    server = LaunchedServer(
        c.launch, server_argv(c, spec, port), url_of(c.host, port), spec.workdir
    )
    server.start()
    return server


def distribution_version(python: str | None, distribution: str) -> str:
    """A distribution's version in the environment of ``python`` (None: this one)."""
    if python is None or python == sys.executable:
        return importlib.metadata.version(distribution)
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"

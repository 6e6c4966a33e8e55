"""Launch profiles: how the ``openai_server`` runner starts its own server, and the process.

A profile is data plus a pure argv builder: the argv is a list built from the runtime config
(never a shell string), the server binds ``runtime.host`` (127.0.0.1 unless told otherwise) on
a free port, and ``runtime.server_args`` is appended verbatim. No API key is ever put in an
argv. ``LaunchedServer`` runs it in its own process group, logs to ``<workdir>/server.log``,
writes the group id to ``<workdir>/server.pgid`` (so a parent can kill the group if the worker
dies) and stops the whole group on ``stop()``.

Flags checked against (the versions are noted because flags drift):
- llama-cpp-python 0.3.36: ``python -m llama_cpp.server --help`` (installed here);
- llama-server: ggml-org/llama.cpp tools/server/README.md @00dc8057 (``-fa on|off|auto``);
- vLLM: vllm/engine/arg_utils.py @99d7eb5d (booleans take ``--no-``), ``vllm serve MODEL``;
- trtllm-serve: NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py @00209af1.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runners.base import LoadSpec, RunnerConfig

POLL_S = 0.25  # between readiness probes
PROBE_TIMEOUT_S = 2.0  # one readiness probe
STOP_GRACE_S = 10.0  # SIGTERM to SIGKILL
LOG_TAIL_LINES = 15


@dataclass
class ServerLaunchConfig(RunnerConfig):
    """How the ``openai_server`` runner starts its server (``runtime.*`` keys); ``launch`` null:
    it starts none and uses ``runtime.base_url``. Each profile reads the keys under its name."""

    model: str | None = None  # the served name; None: the first id that GET /v1/models lists
    launch: str | None = None  # one of PROFILES
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    ready_timeout_s: float = 120.0
    executable: str | None = None  # None: next to runtime.python, else on PATH
    server_args: list[str] = field(default_factory=list)  # appended verbatim to the argv
    # llama_cpp_python and llama_server
    n_ctx: int = 2048  # llama_server: shared by its `parallel` slots
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None  # None: the hardware profile's thread count
    n_gpu_layers: int = 0
    flash_attn: bool = False
    parallel: int = 1  # llama_server slots
    # vllm (dtype ... kv_cache_dtype) and trtllm_serve (max_model_len, the last three)
    dtype: str = "auto"
    max_model_len: int | None = None  # None: from the model config
    gpu_memory_utilization: float = 0.9
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    max_batch_size: int = 64
    max_num_tokens: int = 8192
    kv_cache_free_gpu_memory_fraction: float = 0.9

    def check_launch(self) -> None:
        """Validation of the launch keys, for the subclass's ``__post_init__``."""
        if self.launch is None:
            return
        if self.launch not in PROFILES:
            raise ValueError(
                f"runtime.launch={self.launch!r} is invalid; choose one of: "
                f"{', '.join(PROFILES)} (or null to use runtime.base_url)"
            )
        if self.launch == "llama_cpp_python" and self.executable is not None:
            raise ValueError(
                "runtime.executable does not apply to launch=llama_cpp_python; "
                "set runtime.python to the interpreter instead"
            )
        rules = (
            ("ready_timeout_s", self.ready_timeout_s > 0, "> 0"),
            ("gpu_memory_utilization", 0 < self.gpu_memory_utilization <= 1, "in (0, 1]"),
            ("n_ctx", self.n_ctx >= 16, ">= 16"),
            ("parallel", self.parallel >= 1, ">= 1"),
            ("port", self.port is None or 0 < self.port < 65536, "in 1..65535 or null"),
        )
        for field_name, ok, rule in rules:
            if not ok:
                raise ValueError(f"runtime.{field_name}={getattr(self, field_name)} must be {rule}")

    def model_format(self) -> str | None:
        """The launched profile's artifact; None for an external server (no local model)."""
        return None if self.launch is None else PROFILES[self.launch].model_format

    def required_packages(self) -> tuple[str, ...]:
        """llama-cpp-python's server runs in the worker's interpreter, so its extra must be
        installed there; the other profiles are programs found at launch."""
        return LLAMA_CPP_SERVER_PACKAGES if self.launch == "llama_cpp_python" else ()


# llama-cpp-python[server]'s dependencies (its `server` extra, pinned in pyproject's `server`)
LLAMA_CPP_SERVER_PACKAGES = (
    "llama-cpp-python",
    "uvicorn",
    "fastapi",
    "pydantic-settings",
    "sse-starlette",
    "starlette-context",
)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _threads(c: ServerLaunchConfig, spec: LoadSpec) -> str:
    return str(c.n_threads or spec.threads)


def llama_cpp_python_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    # --interrupt_requests defaults to true: a new request then ends the running stream early
    # (seen here: concurrent streams broke off). mlock off, as in the in-process runner.
    return [
        *("--model", str(spec.model_path), "--host", host, "--port", str(port)),
        *("--n_ctx", str(c.n_ctx), "--n_batch", str(c.n_batch), "--n_ubatch", str(c.n_ubatch)),
        *("--n_threads", _threads(c, spec), "--n_threads_batch", _threads(c, spec)),
        *("--n_gpu_layers", str(c.n_gpu_layers), "--flash_attn", _flag(c.flash_attn)),
        *("--seed", "0", "--use_mlock", "false", "--interrupt_requests", "false"),
        *("--verbose", "false"),
    ]


def llama_server_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    # -c is the context of all slots together: each of the -np slots gets n_ctx / parallel.
    return [
        *("-m", str(spec.model_path), "--host", host, "--port", str(port)),
        *("-c", str(c.n_ctx), "-b", str(c.n_batch), "-ub", str(c.n_ubatch)),
        *("-t", _threads(c, spec), "-tb", _threads(c, spec), "-ngl", str(c.n_gpu_layers)),
        *("-np", str(c.parallel), "-fa", "on" if c.flash_attn else "off"),
        *("--seed", "0", "--no-cache-prompt", "--no-webui"),
    ]


def vllm_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    argv = [str(spec.model_path), "--host", host, "--port", str(port)]
    argv += ["--served-model-name", c.model or spec.model_path.name, "--dtype", c.dtype]
    if c.max_model_len is not None:
        argv += ["--max-model-len", str(c.max_model_len)]
    argv += ["--gpu-memory-utilization", str(c.gpu_memory_utilization)]
    if c.quantization is not None:
        argv += ["--quantization", c.quantization]
    return [
        *argv,
        "--kv-cache-dtype",
        c.kv_cache_dtype,
        "--no-enable-prefix-caching",
        *("--seed", "0"),
    ]


def trtllm_serve_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    argv = [str(spec.model_path), "--host", host, "--port", str(port), "--backend", "pytorch"]
    argv += ["--max_batch_size", str(c.max_batch_size), "--max_num_tokens", str(c.max_num_tokens)]
    if c.max_model_len is not None:
        argv += ["--max_seq_len", str(c.max_model_len)]
    return [*argv, "--kv_cache_free_gpu_memory_fraction", str(c.kv_cache_free_gpu_memory_fraction)]


@dataclass(frozen=True, slots=True)
class Profile:
    """One way to start a server: its program, the model it loads and its option builder."""

    name: str
    program: str | None  # the executable's file name; None: ``python -m llama_cpp.server``
    subcommand: tuple[str, ...]  # what follows the program before the options
    model_format: str  # "gguf" (a file) or "hf" (a checkpoint directory)
    tokenize: str | None  # the tokenize body it understands (runners.openai_compat)
    prefix_cache: str  # whether a repeated prompt prefix skips prefill, recorded per cell
    options: Callable[[ServerLaunchConfig, LoadSpec, str, int], list[str]]
    # honours the request field `ignore_eos` (llama-cpp-python's server does not: only its
    # `min_tokens` masks EOS until the length is reached)
    ignore_eos: bool = True


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="llama_cpp_python",
            program=None,
            subcommand=(),
            model_format="gguf",
            tokenize="llama_cpp_python",
            prefix_cache="on: llama-cpp-python reuses the previous request's matching prompt "
            "prefix (no switch turns it off)",
            options=llama_cpp_python_args,
            ignore_eos=False,
        ),
        Profile(
            name="llama_server",
            program="llama-server",
            subcommand=(),
            model_format="gguf",
            tokenize="llama_server",
            prefix_cache="off (--no-cache-prompt)",
            options=llama_server_args,
        ),
        Profile(
            name="vllm",
            program="vllm",
            subcommand=("serve",),
            model_format="hf",
            tokenize="vllm",
            prefix_cache="off (--no-enable-prefix-caching)",
            options=vllm_args,
        ),
        Profile(
            name="trtllm_serve",
            program="trtllm-serve",
            subcommand=(),
            model_format="hf",
            tokenize=None,  # no tokenize endpoint (/health, /version, /metrics only)
            prefix_cache="trtllm-serve's default, not turned off "
            "(kv_cache_config.enable_block_reuse)",
            options=trtllm_serve_args,
        ),
    )
}


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

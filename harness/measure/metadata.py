"""The environment fingerprint: what someone needs to reproduce or distrust a number.

Nothing here imports a runtime; runtime versions come from distribution metadata or from the
runner inside the worker. No environment variables are recorded (they may hold secrets).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

# Distributions whose versions matter to a result, recorded when installed.
TRACKED_PACKAGES = (
    "harness",
    "llama-cpp-python",
    "gguf",
    "numpy",
    "hydra-core",
    "omegaconf",
    "mlflow",
    "nvidia-ml-py",
    "torch",
    "transformers",
    "torchao",
    "accelerate",
    "safetensors",
    "aiohttp",
    "vllm",
    "tensorrt-llm",
)
REPO_DIR = Path(__file__).resolve().parent.parent
IMAGE_FACTS = "/etc/harness-image.json"  # written by docker/image_facts.py in Dockerfile.gpu


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """Cores this process may run on (affinity), not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def gpu_info() -> dict[str, Any]:
    """GPUs through NVML; on a machine without one, the reason NVML gave."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded on CPU machines
        return {"available": False, "reason": f"NVML unavailable: {e}"}
    try:
        count = pynvml.nvmlDeviceGetCount()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        devices = []
        for i in range(count):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            devices.append(
                {
                    "index": i,
                    "name": pynvml.nvmlDeviceGetName(h),
                    "uuid": pynvml.nvmlDeviceGetUUID(h),
                    "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                }
            )
        return {
            "available": count > 0,
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "devices": devices,
            **({} if count else {"reason": "NVML found no GPU"}),
        }
    finally:
        pynvml.nvmlShutdown()


@cache
def git_state(repo: Path = REPO_DIR) -> dict[str, str]:
    """Commit and dirty flag of the harness checkout ("unknown" outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": "unknown"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": "unknown" if status is None else str(bool(status)).lower()}


def machine_identity() -> dict[str, Any]:
    """The part of the machine that changes results; part of every cell key."""
    gpus = gpu_info()
    names = [d["name"] for d in gpus.get("devices", [])]
    return {"cpu": cpu_model(), "gpus": names, "driver": gpus.get("driver")}


def image_facts() -> dict[str, Any] | None:
    """What the image says about itself; None outside an image."""
    name = os.environ.get("HARNESS_IMAGE")
    if not name:
        return None
    path = Path(os.environ.get("HARNESS_IMAGE_FACTS", IMAGE_FACTS))
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        facts = {"error": f"{path}: {e}"}
    return {
        "name": name,
        "base": os.environ.get("HARNESS_BASE_IMAGE", "unknown"),
        "digest": os.environ.get("HARNESS_IMAGE_DIGEST") or None,
        **facts,
    }


def environment() -> dict[str, Any]:
    """Full fingerprint written as environment.json with every cell."""
    vm = psutil.virtual_memory()
    return {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,  # a cell may run under another venv's Python
        "python_implementation": platform.python_implementation(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "usable_cores": usable_cpus(),
        },
        "memory_total_bytes": vm.total,
        "gpu": gpu_info(),
        "git": git_state(),
        "packages": package_versions(),
        "image": image_facts(),
    }

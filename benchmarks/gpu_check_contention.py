"""On a real NVIDIA GPU: does the resource sampler tell the measured tree (the worker and a
server it launched) from a foreign process holding the device, and account CPU cores to each?

Runs where only torch, psutil and nvidia-ml-py exist (no hydra/mlflow), like
gpu_check_resources.py. Prints each window's metrics next to what was set up:

    python benchmarks/gpu_check_contention.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
pkg = types.ModuleType("harness")
pkg.__path__ = [str(REPO / "harness")]  # submodules import without running harness/__init__
sys.modules["harness"] = pkg

import torch  # noqa: E402

from harness.measure.resources import ResourceMonitor, window_metrics  # noqa: E402

GIB = 2**30
# holds GiB on the GPU and spins a CPU core until killed; touches READY when it holds them
HOLDER = """
import sys, time, pathlib, torch
x = torch.empty(int(float(sys.argv[1]) * 2**30), dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
pathlib.Path(sys.argv[2]).touch()
while True:  # the load itself: one core busy until the parent kills it
    pass
"""


def wait_for(path: Path, timeout_s: float = 60) -> None:
    t = time.time()
    while not path.exists():
        if time.time() - t > timeout_s:
            raise TimeoutError(path)
        time.sleep(0.05)


def window(monitor: ResourceMonitor, label: str, seconds: float) -> None:
    time.sleep(0.6)  # the sampler rescans children every 0.5 s
    monitor.mark(f"start:{label}")
    time.sleep(seconds)
    monitor.mark(f"end:{label}")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    torch.cuda.init()
    own = torch.empty(2 * GIB, dtype=torch.uint8, device="cuda")  # the worker's 2 GiB
    torch.cuda.synchronize()
    monitor = ResourceMonitor(os.getpid(), gpu_index=0, interval_s=0.01)
    monitor.start()
    window(monitor, "worker_only", 1.5)
    child = subprocess.Popen([sys.executable, "-c", HOLDER, "6", str(tmp / "child")])
    wait_for(tmp / "child")
    window(monitor, "with_server", 2.0)  # a "launched server": 6 GiB, one core
    launcher = (
        "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', "
        f"{HOLDER!r}, '3', {str(tmp / 'foreign')!r}], stdout=-3).pid)"
    )
    foreign = int(subprocess.check_output([sys.executable, "-c", launcher], text=True))
    wait_for(tmp / "foreign")
    window(monitor, "with_foreign", 2.0)  # contention: 3 GiB and one core outside the tree
    os.kill(foreign, 9)
    child.kill()
    child.wait()
    log = monitor.stop()
    del own
    print("static:", json.dumps(log.static, indent=1))
    print("absent:", json.dumps(log.absent, indent=1))
    expect = {
        "worker_only": "proc ~2 GiB + context, no server, foreign 0",
        "with_server": "proc ~8 GiB + 2 contexts, server ~1 core, foreign 0",
        "with_foreign": "as above, foreign 1 process ~3 GiB + context, foreign ~1 core",
    }
    keys = (
        "gpu_peak_proc_bytes",
        "gpu_peak_used_bytes",
        "gpu_foreign_procs_max",
        "gpu_foreign_peak_bytes",
        "client_peak_rss_bytes",
        "server_peak_rss_bytes",
        "client_cpu_cores",
        "server_cpu_cores",
        "foreign_cpu_cores",
        "samples",
    )
    for w, note in expect.items():
        metrics, absent = window_metrics(log, f"start:{w}", f"end:{w}")
        print(f"--- {w}: expect {note}")
        for k in keys:
            v = metrics.get(k)
            shown = f"{v / GIB:.3f} GiB" if v is not None and k.endswith("bytes") else v
            print(f"  {k:28s} {shown if v is not None else 'absent: ' + absent.get(k, '?')}")


if __name__ == "__main__":
    main()

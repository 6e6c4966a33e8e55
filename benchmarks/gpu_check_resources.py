"""Exercise the resource monitor on a real NVIDIA GPU and print what it observed.

Runs where only torch, psutil and nvidia-ml-py exist (no hydra/mlflow): the harness package's
__init__ is bypassed and only harness.measure.resources (with clock and stats) is loaded.

    python benchmarks/gpu_check_resources.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
pkg = types.ModuleType("harness")
pkg.__path__ = [str(REPO / "harness")]  # submodules import without running harness/__init__
sys.modules["harness"] = pkg

import torch  # noqa: E402

from harness.measure.resources import ResourceMonitor, throttle_flags, window_metrics  # noqa: E402

GIB = 2**30


def busy(seconds: float) -> int:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
        n += 20
    return n


def main() -> None:
    torch.cuda.init()
    monitor = ResourceMonitor(os.getpid(), gpu_index=0, interval_s=0.01)
    monitor.start()
    time.sleep(0.3)
    monitor.mark("start:idle")
    time.sleep(1.5)
    monitor.mark("end:idle")
    monitor.mark("start:hold")
    x = torch.empty(8 * GIB, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    time.sleep(0.5)
    del x
    torch.cuda.empty_cache()
    monitor.mark("end:hold")
    monitor.mark("start:spike")
    spikes = []
    for ms in (100, 20):  # does 10 ms polling see a 4 GiB allocation held this long?
        y = torch.empty(4 * GIB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        time.sleep(ms / 1000)
        del y
        torch.cuda.empty_cache()
        spikes.append(ms)
        time.sleep(0.2)
    monitor.mark("end:spike")
    monitor.mark("start:busy")
    iters = busy(3.0)
    monitor.mark("end:busy")
    log = monitor.stop()
    print("static:", json.dumps(log.static, indent=1))
    print("absent:", json.dumps(log.absent, indent=1))
    print(f"samples: {len(log.samples)}, matmul iterations {iters}")
    for w in ("idle", "hold", "spike", "busy"):
        metrics, absent = window_metrics(log, f"start:{w}", f"end:{w}")
        print(f"--- {w}")
        for k, v in sorted(metrics.items()):
            print(f"  {k:36s} {v:,.4f}")
        if absent:
            print("  absent:", absent)
        print("  throttle:", throttle_flags(log, f"start:{w}", f"end:{w}"))
    print("torch max_memory_allocated GiB:", torch.cuda.max_memory_allocated() / GIB)


if __name__ == "__main__":
    main()

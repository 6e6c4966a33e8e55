"""One NVML device as the resource sampler reads it (imported only where a GPU is asked for).

Per tick: device memory used, and each compute process's memory, split into the measured tree's
and everyone else's (a foreign process on the device shares its memory bandwidth and SMs, and
makes a peak over baseline meaningless). In a container without the host's PID namespace NVML's
pids match none of ours: then per-process numbers are absent, never attributed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
GPU_METRICS = (
    *("gpu_peak_used_bytes", "gpu_peak_used_over_baseline_bytes", "gpu_peak_proc_bytes"),
    *("gpu_energy_j", "gpu_mean_power_w", "gpu_energy_window_s"),
    *("sm_clock_min_mhz", "sm_clock_mean_mhz"),
    *("gpu_foreign_procs_max", "gpu_foreign_peak_bytes"),
)
GPU_KEYS = (*GPU_METRICS, "throttle_reasons", "gpu_power_w")
# Bits of nvmlClocksEventReason* (nvml.h; the older nvmlClocksThrottleReason* names share the
# values, 0x200/0x400 as nvidia-ml-py defines them), hard-coded so a stored log decodes without
# pynvml. 0x1 (GPU idle) and 0x2 (applications clocks setting) are normal, not throttling.
# fmt: off
THROTTLE_BITS = {
    0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
    0x200: "board_limit", 0x400: "reliability",
}
# fmt: on
BENIGN_THROTTLE = 0x1 | 0x2


class Nvml:
    """One NVML device. A failed read gives None and records its first error under the metrics
    it feeds; an unsupported read fails fast (microseconds), so it is simply tried again."""

    def __init__(self, nv: Any, handle: Any, absent: dict[str, str], static: dict[str, str]):
        self.nv, self.handle, self.absent = nv, handle, absent
        self.foreign_procs, self.tree_seen = 0, False  # for the PID-namespace check in close()
        legacy = nv.nvmlDeviceGetCurrentClocksThrottleReasons
        self.reasons_fn: Any = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", legacy)
        try:
            self.reasons_fn(handle)
        except nv.NVMLError:  # drivers older than the rename (R535) have only the legacy name
            self.reasons_fn = legacy
        for key, read in (
            ("gpu_name", lambda: nv.nvmlDeviceGetName(handle)),
            ("gpu_uuid", lambda: nv.nvmlDeviceGetUUID(handle)),
            ("gpu_memory_total_bytes", lambda: nv.nvmlDeviceGetMemoryInfo(handle).total),
            ("gpu_power_limit_w", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000),
            ("gpu_driver", nv.nvmlSystemGetDriverVersion),
        ):
            try:
                static[key] = str(read())
            except nv.NVMLError as e:
                static[key] = f"unavailable: {e}"

    def _call(self, keys: tuple[str, ...], conv: Callable[[Any], T], fn: Any, *a: Any) -> T | None:
        try:
            return conv(fn(self.handle, *a))
        except self.nv.NVMLError as e:
            for key in keys:
                self.absent.setdefault(key, f"NVML {fn.__name__} failed: {e}")
            return None

    def used_bytes(self) -> int | None:
        keys = ("gpu_peak_used_bytes", "gpu_peak_used_over_baseline_bytes")
        return self._call(keys, lambda m: int(m.used), self.nv.nvmlDeviceGetMemoryInfo)

    def proc_bytes(self, pids: set[int]) -> tuple[int | None, int | None, int | None]:
        """usedGpuMemory summed over the tree's pids, then the number of other compute
        processes and their memory; all None when NVML's pids are not ours (yet)."""
        fn = self.nv.nvmlDeviceGetComputeRunningProcesses
        procs = self._call(("gpu_peak_proc_bytes", "gpu_foreign_procs_max"), list, fn)
        if procs is None:
            return None, None, None
        mine = [p for p in procs if p.pid in pids]
        others = [p for p in procs if p.pid not in pids]
        if procs and not mine:
            self.foreign_procs = max(self.foreign_procs, len(procs))
        self.tree_seen = self.tree_seen or bool(mine)
        # usedGpuMemory is None where the driver withholds it (WDDM, some vGPU profiles)
        used = [int(p.usedGpuMemory) for p in mine if p.usedGpuMemory is not None]
        theirs = sum(int(p.usedGpuMemory or 0) for p in others)
        if not self.tree_seen:  # nothing of ours seen: NVML's pids may be another namespace's
            return (0 if not procs else None), None, None
        return (None if mine and not used else sum(used)), len(others), theirs

    def slow(self) -> tuple[int | None, int | None, float | None]:
        nv, clocks = self.nv, ("sm_clock_min_mhz", "sm_clock_mean_mhz")
        return (
            self._call(clocks, int, nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
            self._call(("throttle_reasons",), int, self.reasons_fn),
            self._call(("gpu_power_w",), lambda mw: mw / 1000, nv.nvmlDeviceGetPowerUsage),
        )

    def energy_mj(self) -> int | None:
        keys = ("gpu_energy_j", "gpu_mean_power_w", "gpu_energy_window_s")
        return self._call(keys, int, self.nv.nvmlDeviceGetTotalEnergyConsumption)

    def close(self) -> None:
        if self.foreign_procs and not self.tree_seen:
            why = "none of NVML's {} compute pids is in the tree (container without host pids?)"
            for key in ("gpu_peak_proc_bytes", "gpu_foreign_procs_max", "gpu_foreign_peak_bytes"):
                self.absent.setdefault(key, why.format(self.foreign_procs))
        self.nv.nvmlShutdown()


def open_nvml(index: int, static: dict[str, str], absent: dict[str, str]) -> Nvml | None:
    # NVML ignores CUDA_VISIBLE_DEVICES (gpu_index is an NVML index): record CUDA's view beside it.
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        static[var.lower()] = os.environ.get(var, "<unset>")
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
        absent.update(dict.fromkeys(GPU_KEYS, f"NVML unavailable: {e}"))
        return None
    try:
        return Nvml(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), absent, static)
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        absent.update(dict.fromkeys(GPU_KEYS, f"NVML device index {index} unavailable: {e}"))
        return None

"""Resource sampling during a measurement: host RSS of a process tree, GPU memory, clocks, energy.

A daemon thread samples on a fixed deadline grid (the harness clock, like request events);
energy counters are read only at labelled marks. Raw samples are kept; statistics come from the
pure functions below. What cannot be measured is named in ``absent`` with a reason, never 0.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from harness.metrics.stats import percentile
from harness.results.clock import now_ns

LOG_VERSION = 1  # 1: header, sample and mark lines
POWERCAP = Path("/sys/class/powercap")
RAPL_RANGE = "rapl_max_energy_range_uj."  # static key prefix, one per domain
CHILDREN_REFRESH_NS = 500_000_000  # children() scans all of /proc: too slow for every tick
GPU_METRICS = (
    *("gpu_peak_used_bytes", "gpu_peak_used_over_baseline_bytes", "gpu_peak_proc_bytes"),
    *("gpu_energy_j", "gpu_mean_power_w", "gpu_energy_window_s"),
    *("sm_clock_min_mhz", "sm_clock_mean_mhz"),
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
T = TypeVar("T")
Put = Callable[[str, float | None, str], None]
Metrics = tuple[dict[str, float], dict[str, str]]


@dataclass(frozen=True, slots=True)
class Sample:
    t_ns: int
    rss_bytes: int
    gpu_used_bytes: int | None
    gpu_proc_bytes: int | None
    sm_clock_mhz: int | None
    throttle_reasons: int | None
    power_w: float | None


@dataclass(frozen=True, slots=True)
class Mark:
    label: str
    t_ns: int
    gpu_energy_mj: int | None
    cpu_energy_uj: int | None


@dataclass(frozen=True, slots=True)
class ResourceLog:
    interval_s: float
    samples: list[Sample]
    marks: list[Mark]
    static: dict[str, str]
    absent: dict[str, str]
    baseline: Sample | None


class _Nvml:
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

    def proc_bytes(self, pids: set[int]) -> int | None:
        """usedGpuMemory summed over the tree's pids; None when NVML's pids are not ours."""
        fn = self.nv.nvmlDeviceGetComputeRunningProcesses
        procs = self._call(("gpu_peak_proc_bytes",), list, fn)
        if procs is None:
            return None
        mine = [p for p in procs if p.pid in pids]
        if procs and not mine:
            self.foreign_procs = max(self.foreign_procs, len(procs))
            return None
        self.tree_seen = self.tree_seen or bool(mine)
        # usedGpuMemory is None where the driver withholds it (WDDM, some vGPU profiles)
        used = [int(p.usedGpuMemory) for p in mine if p.usedGpuMemory is not None]
        return None if mine and not used else sum(used)

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
            self.absent.setdefault("gpu_peak_proc_bytes", why.format(self.foreign_procs))
        self.nv.nvmlShutdown()


def _open_nvml(index: int, static: dict[str, str], absent: dict[str, str]) -> _Nvml | None:
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
        return _Nvml(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), absent, static)
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        absent.update(dict.fromkeys(GPU_KEYS, f"NVML device index {index} unavailable: {e}"))
        return None


def _open_rapl(root: Path, static: dict[str, str], absent: dict[str, str]) -> list[Path]:
    """Top-level package domains (intel-rapl:N, not the intel-rapl:N:M subzones they contain)."""
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not domains:
        where = f"no {root}/intel-rapl:N domain" if root.is_dir() else f"{root} does not exist"
        absent["cpu_energy_j"] = f"RAPL not readable: {where}"
        return []
    try:
        for d in domains:
            int((d / "energy_uj").read_text())
            static[RAPL_RANGE + d.name] = (d / "max_energy_range_uj").read_text().strip()
    except (OSError, ValueError) as e:
        cve = " (root-only since CVE-2020-8694)" if isinstance(e, PermissionError) else ""
        absent["cpu_energy_j"] = f"RAPL not readable: {e}{cve}"
        return []
    static["rapl_domains"] = ",".join(d.name for d in domains)
    return [d / "energy_uj" for d in domains]


class ResourceMonitor:
    """Samples ``root_pid`` and its descendants (and NVML device ``gpu_index``) in a thread."""

    def __init__(
        self, root_pid: int, gpu_index: int | None, interval_s: float = 0.01, slow_every: int = 10
    ) -> None:
        if interval_s <= 0 or slow_every < 1:
            raise ValueError(f"need interval_s > 0, slow_every >= 1: {interval_s}, {slow_every}")
        self._root, self._gpu_index = psutil.Process(root_pid), gpu_index
        self._interval_s, self._slow_every = interval_s, slow_every
        self._static = {"root_pid": str(root_pid), "slow_every": str(slow_every)}
        self._absent: dict[str, str] = {}
        self._samples: list[Sample] = []
        self._marks: list[Mark] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpu: _Nvml | None = None
        self._rapl: list[Path] = []
        self._procs: dict[int, psutil.Process] = {}
        self._children_ns: int | None = None
        self._ticks = 0
        self._slow: tuple[int | None, int | None, float | None] = (None, None, None)
        self._log: ResourceLog | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ResourceMonitor.start() called twice")
        self._rapl = _open_rapl(POWERCAP, self._static, self._absent)
        if self._gpu_index is None:
            self._absent.update(dict.fromkeys(GPU_KEYS, "no GPU requested (gpu_index=None)"))
        else:
            self._static["gpu_index"] = str(self._gpu_index)
            self._gpu = _open_nvml(self._gpu_index, self._static, self._absent)
        self._sample()  # the baseline, before the caller loads anything
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()

    def mark(self, label: str) -> Mark:
        if self._thread is None or self._log is not None:
            raise RuntimeError("mark() needs a started, not yet stopped ResourceMonitor")
        t_ns = now_ns()
        try:
            cpu = sum(int(f.read_text()) for f in self._rapl) if self._rapl else None
        except (OSError, ValueError) as e:
            cpu = None
            self._absent.setdefault("cpu_energy_j", f"RAPL read failed: {e}")
        self._marks.append(Mark(label, t_ns, self._gpu.energy_mj() if self._gpu else None, cpu))
        return self._marks[-1]

    def stop(self) -> ResourceLog:
        if self._thread is None:
            raise RuntimeError("stop() before start()")
        if self._log is None:
            self._stopping.set()
            self._thread.join()
            if self._gpu is not None:
                self._gpu.close()
            copy = (list(self._samples), list(self._marks), dict(self._static), dict(self._absent))
            self._log = ResourceLog(self._interval_s, *copy, self._samples[0])
        return self._log

    def __enter__(self) -> ResourceMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval_ns = max(1, round(self._interval_s * 1e9))
        deadline = now_ns()
        while True:
            deadline += interval_ns
            late = now_ns() - deadline
            if late > 0:  # overran or starved: skip the missed slots rather than burst
                deadline += (late // interval_ns + 1) * interval_ns
            if self._stopping.wait(max(0.0, (deadline - now_ns()) / 1e9)):
                return
            try:
                self._sample()
            except Exception as e:  # the measurement must survive a sampler bug; say so
                self._absent.setdefault("resource_sampler", f"a tick failed, skipped: {e!r}")

    def _sample(self) -> None:
        rss = self._tree_rss(t_ns := now_ns())
        used = proc = None
        if self._gpu is not None:
            used, proc = self._gpu.used_bytes(), self._gpu.proc_bytes(set(self._procs))
            if self._ticks % self._slow_every == 0:
                self._slow = self._gpu.slow()
        self._ticks += 1
        self._samples.append(Sample(t_ns, rss, used, proc, *self._slow))

    def _tree_rss(self, t_ns: int) -> int:
        if self._children_ns is None or t_ns - self._children_ns >= CHILDREN_REFRESH_NS:
            self._children_ns = t_ns
            try:
                kids = self._root.children(recursive=True)
                self._procs = {p.pid: self._procs.get(p.pid, p) for p in [self._root, *kids]}
            except psutil.NoSuchProcess:
                pass  # the root is gone; keep counting the descendants already known
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:  # exited (zombies included) since the last refresh
                del self._procs[pid]
        return total


def counter_delta(start: int, end: int, wrap: int | None) -> int | None:
    """end - start for a monotonic counter; one wraparound is undone with its range (RAPL's
    max_energy_range_uj); without a range a decrease is a reset and the delta is unknowable."""
    if end >= start:
        return end - start
    return None if wrap is None else end + wrap - start


def _window(log: ResourceLog, start: str, end: str) -> tuple[Mark, Mark, list[Sample]]:
    """The last marks labelled ``start`` and ``end`` and the samples between them, inclusive."""
    last = {m.label: m for m in log.marks}
    a, b = last.get(start), last.get(end)
    if a is None or b is None or b.t_ns < a.t_ns:
        raise ValueError(f"need mark {start!r} then mark {end!r}; have {sorted(last)}")
    return a, b, [s for s in log.samples if a.t_ns <= s.t_ns <= b.t_ns]


def window_metrics(log: ResourceLog, start: str, end: str) -> Metrics:
    """Metrics between the last marks labelled ``start`` and ``end``, and the reason for each
    one that cannot be given. Means are arithmetic over samples (evenly spaced, hence
    time-weighted); peaks are sample maxima; the p99 gap between samples is type-7."""
    a, b, window = _window(log, start, end)
    metrics: dict[str, float] = {"samples": float(len(window))}
    absent: dict[str, str] = {}

    def put(key: str, value: float | None, reason: str) -> None:
        if value is None:
            absent[key] = log.absent.get(key) or reason
        else:
            metrics[key] = float(value)

    def col(field: str) -> list[int]:
        return [v for s in window if (v := getattr(s, field)) is not None]

    none = f"no sample between marks {start!r} and {end!r}"
    rss, used, proc = col("rss_bytes"), col("gpu_used_bytes"), col("gpu_proc_bytes")
    clock = col("sm_clock_mhz")
    put("peak_tree_rss_bytes", max(rss, default=None), none)
    put("mean_tree_rss_bytes", sum(rss) / len(rss) if rss else None, none)
    gaps = [(y.t_ns - x.t_ns) / 1e9 for x, y in itertools.pairwise(window)]
    put("sample_interval_p99_s", percentile(gaps, 99), f"fewer than 2 samples: {none}")
    put("gpu_peak_used_bytes", max(used, default=None), f"{none} has gpu_used_bytes")
    base = log.baseline.gpu_used_bytes if log.baseline else None
    over = None if base is None or not used else max(used) - base
    put("gpu_peak_used_over_baseline_bytes", over, "no baseline or window gpu_used_bytes")
    put("gpu_peak_proc_bytes", max(proc, default=None), f"{none} has gpu_proc_bytes")
    put("sm_clock_min_mhz", min(clock, default=None), f"{none} has sm_clock_mhz")
    put("sm_clock_mean_mhz", sum(clock) / len(clock) if clock else None, f"{none} has clocks")
    _energy(log, a, b, put)
    return metrics, absent


def _energy(log: ResourceLog, a: Mark, b: Mark, put: Put) -> None:
    window_s = (b.t_ns - a.t_ns) / 1e9
    if a.gpu_energy_mj is None or b.gpu_energy_mj is None:
        gpu_j, why = None, "GPU energy counter not read at both marks"
    else:
        mj = counter_delta(a.gpu_energy_mj, b.gpu_energy_mj, None)
        gpu_j = None if mj is None else mj / 1000
        why = "NVML energy counter went backwards (driver reload or reset): delta unknowable"
    put("gpu_energy_j", gpu_j, why)
    put("gpu_energy_window_s", None if gpu_j is None else window_s, why)
    power = None if gpu_j is None or window_s <= 0 else gpu_j / window_s
    put("gpu_mean_power_w", power, why if gpu_j is None else "zero-length window")
    if a.cpu_energy_uj is None or b.cpu_energy_uj is None:
        put("cpu_energy_j", None, "RAPL not read at both marks")
        return
    # Marks hold the sum over domains: adding one range undoes one domain's wrap if all domains
    # share the range and the window's total is below it (minutes at package power).
    ranges = {int(v) for k, v in log.static.items() if k.startswith(RAPL_RANGE)}
    uj = counter_delta(a.cpu_energy_uj, b.cpu_energy_uj, ranges.pop() if len(ranges) == 1 else None)
    put("cpu_energy_j", None if uj is None else uj / 1e6, "RAPL sum decreased, range unknown")


def throttle_flags(log: ResourceLog, start: str, end: str) -> list[str]:
    """Sorted names of the non-benign clock-event reasons seen between the marks."""
    bits = 0
    for s in _window(log, start, end)[2]:
        bits |= (s.throttle_reasons or 0) & ~BENIGN_THROTTLE
    set_bits = [1 << i for i in range(bits.bit_length()) if bits >> i & 1]
    return sorted(THROTTLE_BITS.get(bit, f"unknown_0x{bit:x}") for bit in set_bits)


def to_jsonl(log: ResourceLog, path: Path) -> None:
    """One header line (interval, static, absent, baseline), then a line per sample and mark."""
    body = asdict(log)
    rows = [{"kind": "sample", **r} for r in body.pop("samples")]
    rows += [{"kind": "mark", **r} for r in body.pop("marks")]
    rows.insert(0, {"kind": "header", "version": LOG_VERSION, **body})
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: Path) -> ResourceLog:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = rows[0] if rows else {}
    if head.get("kind") != "header" or head.get("version") != LOG_VERSION:
        raise ValueError(f"{path}: not a version-{LOG_VERSION} resource log")
    items = [(row.pop("kind"), row) for row in rows[1:]]
    samples = [Sample(**r) for kind, r in items if kind == "sample"]
    marks = [Mark(**r) for kind, r in items if kind == "mark"]
    baseline = None if head["baseline"] is None else Sample(**head["baseline"])
    return ResourceLog(head["interval_s"], samples, marks, head["static"], head["absent"], baseline)

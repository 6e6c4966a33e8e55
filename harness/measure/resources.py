"""Resource sampling during a measurement: host RSS of a process tree, GPU memory, clocks, energy.

A daemon thread samples on a fixed deadline grid (the harness clock, like request events);
energy counters are read only at labelled marks. Raw samples are kept; statistics come from the
pure functions below. What cannot be measured is named in ``absent`` with a reason, never 0.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from harness.measure.nvml import (
    BENIGN_THROTTLE,
    GPU_KEYS,
    THROTTLE_BITS,
    Nvml,
    open_nvml,
)
from harness.measure.nvml import (
    GPU_METRICS as GPU_METRICS,  # re-exported: the metrics this log can give
)
from harness.metrics.stats import percentile
from harness.results.clock import now_ns

# 1: header, sample and mark lines; 2: the worker's own RSS, foreign GPU processes, CPU times at
# marks (version-1 logs read with those None)
LOG_VERSION = 2
READABLE = (1, 2)
POWERCAP = Path("/sys/class/powercap")
RAPL_RANGE = "rapl_max_energy_range_uj."  # static key prefix, one per domain
CHILDREN_REFRESH_NS = 500_000_000  # children() scans all of /proc: too slow for every tick
Put = Callable[[str, float | None, str], None]
NO_SERVER = "no process besides the worker: the runtime runs in it, or the server runs elsewhere"
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
    client_rss_bytes: int | None = None  # the worker process alone (rss_bytes: its tree)
    gpu_foreign_procs: int | None = None  # compute processes on the device outside the tree
    gpu_foreign_bytes: int | None = None  # and their memory


@dataclass(frozen=True, slots=True)
class Mark:
    label: str
    t_ns: int
    gpu_energy_mj: int | None
    cpu_energy_uj: int | None
    # CPU seconds (user + system) so far: the worker alone, the worker and its descendants,
    # and the whole machine busy (every core, every process: total less idle and iowait)
    client_cpu_s: float | None = None
    tree_cpu_s: float | None = None
    busy_cpu_s: float | None = None


@dataclass(frozen=True, slots=True)
class ResourceLog:
    interval_s: float
    samples: list[Sample]
    marks: list[Mark]
    static: dict[str, str]
    absent: dict[str, str]
    baseline: Sample | None


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
        self._gpu: Nvml | None = None
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
            self._gpu = open_nvml(self._gpu_index, self._static, self._absent)
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
        gpu = self._gpu.energy_mj() if self._gpu else None
        self._marks.append(Mark(label, t_ns, gpu, cpu, *self._cpu_seconds()))
        return self._marks[-1]

    def _cpu_seconds(self) -> tuple[float | None, float | None, float | None]:
        """CPU seconds of the worker, of its tree (descendants known to the sampler) and of
        the whole machine; a descendant that exited takes its seconds with it."""
        try:
            own = self._root.cpu_times()
        except psutil.NoSuchProcess:
            return None, None, None
        client = own.user + own.system
        tree = client
        for pid, proc in list(self._procs.items()):
            if pid == self._root.pid:
                continue
            try:
                t = proc.cpu_times()
                tree += t.user + t.system
            except psutil.NoSuchProcess:
                continue
        m = psutil.cpu_times()
        busy = sum(m) - m.idle - getattr(m, "iowait", 0.0)
        # guest time is already inside user on Linux: do not count it twice
        busy -= getattr(m, "guest", 0.0) + getattr(m, "guest_nice", 0.0)
        return client, tree, busy

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
        rss, own = self._tree_rss(t_ns := now_ns())
        used = proc = n_foreign = foreign = None
        if self._gpu is not None:
            used = self._gpu.used_bytes()
            proc, n_foreign, foreign = self._gpu.proc_bytes(set(self._procs))
            if self._ticks % self._slow_every == 0:
                self._slow = self._gpu.slow()
        self._ticks += 1
        self._samples.append(Sample(t_ns, rss, used, proc, *self._slow, own, n_foreign, foreign))

    def _tree_rss(self, t_ns: int) -> tuple[int, int | None]:
        """Σ RSS of the tree, and the worker's own."""
        if self._children_ns is None or t_ns - self._children_ns >= CHILDREN_REFRESH_NS:
            self._children_ns = t_ns
            try:
                kids = self._root.children(recursive=True)
                self._procs = {p.pid: self._procs.get(p.pid, p) for p in [self._root, *kids]}
            except psutil.NoSuchProcess:
                pass  # the root is gone; keep counting the descendants already known
        total, own = 0, None
        for pid, proc in list(self._procs.items()):
            try:
                rss = proc.memory_info().rss
            except psutil.NoSuchProcess:  # exited (zombies included) since the last refresh
                del self._procs[pid]
                continue
            total += rss
            own = rss if pid == self._root.pid else own
        return total, own


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
    own = col("client_rss_bytes")
    put("client_peak_rss_bytes", max(own, default=None), f"{none} has client_rss_bytes")
    # the worker's descendants: a server the runner launched (its whole process tree)
    server = max(
        (s.rss_bytes - s.client_rss_bytes for s in window if s.client_rss_bytes), default=0
    )
    put("server_peak_rss_bytes", server or None, NO_SERVER)
    foreign_n, foreign = col("gpu_foreign_procs"), col("gpu_foreign_bytes")
    put("gpu_foreign_procs_max", max(foreign_n, default=None), f"{none} lists GPU processes")
    put("gpu_foreign_peak_bytes", max(foreign, default=None), f"{none} lists GPU processes")
    _cpu(a, b, put, bool(server))
    _energy(log, a, b, put)
    return metrics, absent


def _cpu(a: Mark, b: Mark, put: Put, has_server: bool) -> None:
    """Cores used (CPU seconds ÷ wall seconds) between the marks: the worker itself, a server
    it launched, and every process outside the measured tree (contention)."""
    window_s = (b.t_ns - a.t_ns) / 1e9
    times = (a.client_cpu_s, a.tree_cpu_s, a.busy_cpu_s, b.client_cpu_s, b.tree_cpu_s)
    if window_s <= 0 or any(t is None for t in times) or b.busy_cpu_s is None:
        for key in ("client_cpu_cores", "server_cpu_cores", "foreign_cpu_cores"):
            put(key, None, "CPU times not read at both marks")
        return
    client = (b.client_cpu_s - a.client_cpu_s) / window_s  # type: ignore[operator]
    tree = (b.tree_cpu_s - a.tree_cpu_s) / window_s  # type: ignore[operator]
    busy = (b.busy_cpu_s - a.busy_cpu_s) / window_s  # type: ignore[operator]
    put("client_cpu_cores", client, "")
    put("server_cpu_cores", tree - client if has_server else None, NO_SERVER)
    # clock ticks (10 ms) round each counter: a small negative difference is zero
    put("foreign_cpu_cores", max(0.0, busy - tree), "")


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
    if head.get("kind") != "header" or head.get("version") not in READABLE:
        raise ValueError(f"{path}: not a resource log of version {READABLE}")
    items = [(row.pop("kind"), row) for row in rows[1:]]
    samples = [Sample(**r) for kind, r in items if kind == "sample"]
    marks = [Mark(**r) for kind, r in items if kind == "mark"]
    baseline = None if head["baseline"] is None else Sample(**head["baseline"])
    return ResourceLog(head["interval_s"], samples, marks, head["static"], head["absent"], baseline)

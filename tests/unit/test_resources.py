"""Resource sampling: real process-tree RSS, absent reasons here, pure derivations by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from harness.measure import resources
from harness.measure.metadata import gpu_info
from harness.measure.resources import (
    GPU_METRICS,
    Mark,
    ResourceLog,
    ResourceMonitor,
    Sample,
    counter_delta,
    read_jsonl,
    throttle_flags,
    to_jsonl,
    window_metrics,
)

MiB = 2**20
GiB = 2**30
GROW_MIB = 300
GROWER = f"""
import sys
import threading
print("ready", flush=True)
sys.stdin.readline()
block = bytearray({GROW_MIB} * {MiB})
for i in range(0, len(block), 4096):  # touch every page so it counts in RSS
    block[i] = 1
print("grown", flush=True)
sys.stdin.readline()
"""
no_nvml = pytest.mark.skipif(bool(gpu_info().get("available")), reason="NVML works here")


@pytest.fixture
def grower() -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            yield child
        finally:
            child.kill()
            child.wait()


def hold(monitor: ResourceMonitor, label: str, seconds: float = 0.2) -> None:
    monitor.mark(f"{label}.start")
    time.sleep(seconds)
    monitor.mark(f"{label}.end")


def test_tree_rss_sees_child_growth(grower: subprocess.Popen[str]) -> None:
    assert grower.stdin is not None and grower.stdout is not None
    tree = ResourceMonitor(os.getpid(), gpu_index=None)  # the child is a descendant
    alone = ResourceMonitor(grower.pid, gpu_index=None)
    with tree, alone:
        for m in (tree, alone):
            m.mark("idle.start")
        own_rss = psutil.Process().memory_info().rss
        time.sleep(0.2)
        own_idle = psutil.Process().memory_info().rss
        for m in (tree, alone):
            m.mark("idle.end")
        grower.stdin.write("go\n")
        grower.stdin.flush()
        assert grower.stdout.readline() == "grown\n"
        for m in (tree, alone):
            m.mark("grown.start")
        own_grown = psutil.Process().memory_info().rss
        time.sleep(0.2)
        for m in (tree, alone):
            m.mark("grown.end")
    # this test process is part of the tree: whatever its own RSS did meanwhile (earlier tests
    # leave freed model memory behind that the allocator may return now) is not the child's
    own_drift = own_grown - own_idle
    for log, drift in ((tree.stop(), own_drift), (alone.stop(), 0)):
        idle, _ = window_metrics(log, "idle.start", "idle.end")
        grown, _ = window_metrics(log, "grown.start", "grown.end")
        growth = grown["mean_tree_rss_bytes"] - idle["mean_tree_rss_bytes"] - drift
        assert growth == pytest.approx(GROW_MIB * MiB, rel=0.15)
        assert grown["peak_tree_rss_bytes"] >= grown["mean_tree_rss_bytes"]
    tree_idle, _ = window_metrics(tree.stop(), "idle.start", "idle.end")
    child_idle, _ = window_metrics(alone.stop(), "idle.start", "idle.end")
    # the tree is this process plus the child
    extra = tree_idle["mean_tree_rss_bytes"] - child_idle["mean_tree_rss_bytes"]
    assert extra == pytest.approx(own_rss, rel=0.2)


def test_sampler_ticks_near_its_interval() -> None:
    with ResourceMonitor(os.getpid(), gpu_index=None, interval_s=0.01) as monitor:
        hold(monitor, "w", 0.3)
    log = monitor.stop()
    metrics, absent = window_metrics(log, "w.start", "w.end")
    marks = {m.label: m.t_ns for m in log.marks}
    expected = (marks["w.end"] - marks["w.start"]) / 1e9 / 0.01
    assert 0.3 * expected <= metrics["samples"] <= expected + 2
    assert 0 < metrics["sample_interval_p99_s"] < 0.2
    assert log.baseline == log.samples[0] and log.baseline.rss_bytes > 0
    assert "peak_tree_rss_bytes" not in absent


def test_marks_are_monotonic_and_stop_is_idempotent() -> None:
    monitor = ResourceMonitor(os.getpid(), gpu_index=None)
    with pytest.raises(RuntimeError):
        monitor.stop()
    monitor.start()
    with pytest.raises(RuntimeError):
        monitor.start()
    marks = [monitor.mark(str(i)) for i in range(5)]
    log = monitor.stop()
    assert monitor.stop() is log
    assert log.marks == marks
    assert [m.t_ns for m in marks] == sorted(m.t_ns for m in marks)
    with pytest.raises(RuntimeError):
        monitor.mark("late")
    assert not any(t.name == "resource-monitor" for t in threading.enumerate())


def test_no_gpu_requested_is_absent_with_reason() -> None:
    with ResourceMonitor(os.getpid(), gpu_index=None) as monitor:
        hold(monitor, "w", 0.05)
    log = monitor.stop()
    assert {log.absent[k] for k in GPU_METRICS} == {"no GPU requested (gpu_index=None)"}
    metrics, absent = window_metrics(log, "w.start", "w.end")
    assert not set(GPU_METRICS) & set(metrics)
    assert {absent[k] for k in GPU_METRICS} == {"no GPU requested (gpu_index=None)"}


@no_nvml
def test_without_nvml_gpu_metrics_are_absent_never_zero() -> None:
    with ResourceMonitor(os.getpid(), gpu_index=0) as monitor:
        hold(monitor, "w", 0.05)
    log = monitor.stop()
    for key in GPU_METRICS:
        assert log.absent[key].startswith("NVML unavailable: ") and len(log.absent[key]) > 18
    assert all(s.gpu_used_bytes is None and s.power_w is None for s in log.samples)
    assert all(m.gpu_energy_mj is None for m in log.marks)
    metrics, absent = window_metrics(log, "w.start", "w.end")
    assert not set(GPU_METRICS) & set(metrics)
    assert {k: absent[k] for k in GPU_METRICS} == {k: log.absent[k] for k in GPU_METRICS}
    assert throttle_flags(log, "w.start", "w.end") == []


@pytest.mark.skipif(
    os.access("/sys/class/powercap/intel-rapl:0/energy_uj", os.R_OK), reason="RAPL readable"
)
def test_rapl_absent_reason_here() -> None:
    with ResourceMonitor(os.getpid(), gpu_index=None) as monitor:
        hold(monitor, "w", 0.01)
    log = monitor.stop()
    reason = log.absent["cpu_energy_j"]
    assert reason.startswith("RAPL not readable: ")
    assert "does not exist" in reason or "CVE-2020-8694" in reason or "no " in reason
    assert window_metrics(log, "w.start", "w.end")[1]["cpu_energy_j"] == reason


def write_rapl(root: Path, uj: dict[str, int]) -> None:
    for name, value in uj.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "energy_uj").write_text(f"{value}\n")
        (root / name / "max_energy_range_uj").write_text("10000\n")


def test_rapl_sums_top_level_domains_and_undoes_a_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "POWERCAP", tmp_path)
    # the intel-rapl:0:0 subzone is part of package 0 and must not be added again
    write_rapl(tmp_path, {"intel-rapl:0": 9000, "intel-rapl:1": 2000, "intel-rapl:0:0": 777})
    with ResourceMonitor(os.getpid(), gpu_index=None) as monitor:
        assert monitor.mark("a").cpu_energy_uj == 11000
        write_rapl(tmp_path, {"intel-rapl:0": 500, "intel-rapl:1": 2500})  # package 0 wrapped
        assert monitor.mark("b").cpu_energy_uj == 3000
    log = monitor.stop()
    assert log.static["rapl_domains"] == "intel-rapl:0,intel-rapl:1"
    assert log.static["rapl_max_energy_range_uj.intel-rapl:1"] == "10000"
    assert "cpu_energy_j" not in log.absent
    metrics, _ = window_metrics(log, "a", "b")
    assert metrics["cpu_energy_j"] == pytest.approx((1500 + 500) / 1e6)


def test_counter_delta() -> None:
    assert counter_delta(100, 250, None) == 150
    assert counter_delta(100, 100, 1000) == 0
    assert counter_delta(900, 50, 1000) == 150  # wrapped once: 100 to the top, 50 after
    assert counter_delta(900, 50, None) is None  # NVML reset: unknowable


def sample(t_s: float, rss_mib: int, used_mib: int | None, clock: int | None, bits: int) -> Sample:
    used = None if used_mib is None else used_mib * MiB
    proc = None if used_mib is None else (used_mib - 100) * MiB
    # the worker itself holds 50 MiB, a launched server the rest; one foreign 1 GiB process
    return Sample(round(t_s * 1e9), rss_mib * MiB, used, proc, clock, bits, 300.0, 50 * MiB, 1, GiB)


def hand_log() -> ResourceLog:
    samples = [
        sample(0.0, 100, 500, 1980, 0x1),  # baseline, before the window
        sample(1.0, 200, 1500, 1980, 0x1),
        sample(1.5, 400, 3500, 1500, 0x1 | 0x4),
        sample(2.0, 300, 2500, 1200, 0x40),
        sample(3.0, 900, 9000, 900, 0x8),  # after the window
    ]
    marks = [
        Mark("start", round(0.5e9), 10_000, 1_000_000),  # overridden by the later "start"
        # CPU seconds: worker, worker + server, whole machine busy
        Mark("start", round(1.0e9), 40_000, 5_000_000, 10.0, 30.0, 100.0),
        Mark("end", round(2.0e9), 290_000, 7_500_000, 10.25, 31.25, 102.5),
    ]
    static = {"rapl_max_energy_range_uj.intel-rapl:0": "262143328850", "gpu_name": "fake"}
    return ResourceLog(0.5, samples, marks, static, {}, samples[0])


def test_window_metrics_by_hand() -> None:
    metrics, absent = window_metrics(hand_log(), "start", "end")
    assert absent == {}
    assert metrics == pytest.approx(
        {
            "samples": 3,
            "peak_tree_rss_bytes": 400 * MiB,
            "mean_tree_rss_bytes": 300 * MiB,  # (200 + 400 + 300) / 3
            "sample_interval_p99_s": 0.5,
            "gpu_peak_used_bytes": 3500 * MiB,
            "gpu_peak_used_over_baseline_bytes": 3000 * MiB,  # 3500 - 500
            "gpu_peak_proc_bytes": 3400 * MiB,
            "sm_clock_min_mhz": 1200,
            "sm_clock_mean_mhz": 1560,  # (1980 + 1500 + 1200) / 3
            "gpu_energy_j": 250,  # (290000 - 40000) mJ
            "gpu_energy_window_s": 1.0,
            "gpu_mean_power_w": 250,
            "cpu_energy_j": 2.5,  # (7.5e6 - 5e6) uJ
            "client_peak_rss_bytes": 50 * MiB,
            "server_peak_rss_bytes": 350 * MiB,  # 400 - 50
            "gpu_foreign_procs_max": 1,
            "gpu_foreign_peak_bytes": GiB,
            "client_cpu_cores": 0.25,  # 0.25 s in a 1 s window
            "server_cpu_cores": 1.0,  # (1.25 - 0.25) s
            "foreign_cpu_cores": 1.25,  # 2.5 s busy, 1.25 s of it the tree
        }
    )


def test_window_metrics_reports_unknowable_energy_and_bad_marks() -> None:
    log = hand_log()
    reset = Mark("reset", round(1.9e9), 5, None)  # the GPU counter restarted
    log = ResourceLog(0.5, log.samples, [*log.marks, reset], log.static, {}, None)
    metrics, absent = window_metrics(log, "start", "reset")
    assert "gpu_energy_j" not in metrics and "went backwards" in absent["gpu_energy_j"]
    assert "gpu_mean_power_w" in absent and "cpu_energy_j" in absent
    assert "baseline" in absent["gpu_peak_used_over_baseline_bytes"]
    with pytest.raises(ValueError, match="'nope'"):
        window_metrics(log, "start", "nope")
    with pytest.raises(ValueError):
        window_metrics(log, "end", "start")


def test_throttle_flags() -> None:
    log = hand_log()
    assert throttle_flags(log, "start", "end") == ["hw_thermal_slowdown", "sw_power_cap"]
    one = Sample(round(1.2e9), 0, None, None, None, 0x1 | 0x4 | 0x40 | 0x2000, None)
    odd = ResourceLog(0.5, [one], log.marks, {}, {}, None)
    assert throttle_flags(odd, "start", "end") == [
        "hw_thermal_slowdown",
        "sw_power_cap",
        "unknown_0x2000",
    ]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    log = hand_log()
    to_jsonl(log, tmp_path / "r.jsonl")
    assert read_jsonl(tmp_path / "r.jsonl") == log
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 1 + len(log.samples) + len(log.marks)
    with ResourceMonitor(os.getpid(), gpu_index=None) as monitor:
        hold(monitor, "w", 0.02)
    real = monitor.stop()
    to_jsonl(real, tmp_path / "real.jsonl")
    assert read_jsonl(tmp_path / "real.jsonl") == real
    (tmp_path / "bad.jsonl").write_text('{"kind": "sample"}\n')
    with pytest.raises(ValueError, match="not a resource log"):
        read_jsonl(tmp_path / "bad.jsonl")


class FakeNVMLError(Exception):
    pass


def fake_pynvml(tree_pid: int, *, legacy_only: bool) -> Any:
    """A device drawing 300 W, with one of our processes (unless tree_pid=-1) and a foreign one."""
    t0 = time.perf_counter()

    def event_reasons(h: object) -> int:
        raise FakeNVMLError("Function Not Found")

    def processes(h: object) -> list[SimpleNamespace]:
        foreign = SimpleNamespace(pid=1, usedGpuMemory=100 * MiB)
        ours = SimpleNamespace(pid=tree_pid, usedGpuMemory=512 * MiB)
        return [foreign, ours] if tree_pid > 0 else [foreign]

    def energy(h: object) -> int:
        return round((time.perf_counter() - t0) * 300_000)  # mJ at 300 W

    return SimpleNamespace(
        NVMLError=FakeNVMLError,
        NVML_CLOCK_SM=1,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: ("handle", i),
        nvmlDeviceGetName=lambda h: "Fake H100",
        nvmlDeviceGetUUID=lambda h: "GPU-fake",
        nvmlSystemGetDriverVersion=lambda: "580.0",
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=2048 * MiB, total=80 * 2**30),
        nvmlDeviceGetComputeRunningProcesses=processes,
        nvmlDeviceGetClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x1 | 0x4,
        nvmlDeviceGetPowerUsage=lambda h: 250_000,
        nvmlDeviceGetTotalEnergyConsumption=energy,
        **({} if legacy_only else {"nvmlDeviceGetCurrentClocksEventReasons": event_reasons}),
    )


def test_gpu_path_with_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(os.getpid(), legacy_only=False))
    with ResourceMonitor(os.getpid(), gpu_index=0, slow_every=3) as monitor:
        hold(monitor, "w", 0.2)
    log = monitor.stop()
    assert {k: log.static[k] for k in ("gpu_name", "gpu_uuid", "gpu_power_limit_w")} == {
        "gpu_name": "Fake H100",
        "gpu_uuid": "GPU-fake",
        "gpu_power_limit_w": "700.0",
    }
    assert not set(GPU_METRICS) & set(log.absent)
    metrics, absent = window_metrics(log, "w.start", "w.end")
    assert not set(GPU_METRICS) & set(absent)
    assert metrics["gpu_peak_proc_bytes"] == 512 * MiB  # the foreign pid is not ours
    # ... but it shares the device: counted apart, for the contention flag
    assert (metrics["gpu_foreign_procs_max"], metrics["gpu_foreign_peak_bytes"]) == (1, 100 * MiB)
    assert metrics["gpu_peak_used_over_baseline_bytes"] == 0
    assert metrics["gpu_mean_power_w"] == pytest.approx(300, rel=0.02)
    assert metrics["sm_clock_min_mhz"] == 1980
    assert {s.power_w for s in log.samples} == {250.0}
    # the event-reasons entry point failed, so the legacy one was used
    assert throttle_flags(log, "w.start", "w.end") == ["sw_power_cap"]


def test_foreign_pids_only_leave_process_memory_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(-1, legacy_only=True))
    with ResourceMonitor(os.getpid(), gpu_index=0) as monitor:
        hold(monitor, "w", 0.05)
    log = monitor.stop()
    assert all(s.gpu_proc_bytes is None and s.gpu_used_bytes for s in log.samples)
    assert "container" in log.absent["gpu_peak_proc_bytes"]
    metrics, absent = window_metrics(log, "w.start", "w.end")
    assert "gpu_peak_proc_bytes" not in metrics and "gpu_peak_used_bytes" in metrics
    assert absent["gpu_peak_proc_bytes"] == log.absent["gpu_peak_proc_bytes"]
    assert "container" in absent["gpu_foreign_procs_max"]  # nothing is called foreign then


@pytest.mark.gpu
def test_real_nvml_device() -> None:
    with ResourceMonitor(os.getpid(), gpu_index=0) as monitor:
        hold(monitor, "w", 1.2)  # the energy counter updates about every 100 ms
    log = monitor.stop()
    assert log.static["gpu_uuid"].startswith(("GPU-", "MIG-"))
    metrics, absent = window_metrics(log, "w.start", "w.end")
    for key in ("gpu_peak_used_bytes", "gpu_energy_j", "gpu_mean_power_w", "sm_clock_min_mhz"):
        assert key in metrics, absent.get(key)
    assert metrics["gpu_energy_j"] > 0 and 5 < metrics["gpu_mean_power_w"] < 2000


def test_cpu_of_the_worker_its_server_and_everyone_else() -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 30: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])  # a "launched server": in the tree
    # contention: a spinner re-parented to init once its launcher exits, so not in the tree
    launcher = (
        "import subprocess, sys; "
        f"print(subprocess.Popen([sys.executable, '-c', {spin!r}], stdout=-3).pid)"
    )
    outsider = int(subprocess.check_output([sys.executable, "-c", launcher], text=True))
    try:
        monitor = ResourceMonitor(os.getpid(), None, interval_s=0.02)
        monitor.start()
        time.sleep(0.6)  # the sampler finds the child (children are rescanned every 0.5 s)
        monitor.mark("s")
        time.sleep(1.0)
        monitor.mark("e")
        metrics, _ = window_metrics(monitor.stop(), "s", "e")
    finally:
        os.kill(outsider, 9)
        child.kill()
        child.wait()
    # two spinners on two cores: each gets most of one; the worker itself mostly sleeps
    assert metrics["client_cpu_cores"] < 0.3
    assert metrics["server_cpu_cores"] > 0.5 and metrics["foreign_cpu_cores"] > 0.5
    assert metrics["server_peak_rss_bytes"] > 0

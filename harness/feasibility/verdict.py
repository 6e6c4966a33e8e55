"""Will it run, will it fit: the support matrix and the memory planner applied to one cell.

Both answers come before anything loads. A cell its engine cannot run on the hardware class,
or predicted not to fit the device, is skipped with the reason (``run.force_fit=true`` runs
the ones that only fail the memory prediction); a cell that runs with a caveat carries it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from harness.config.errors import UserError
from harness.config.schema import HarnessConfig
from harness.feasibility.footprint import Footprint, predict
from harness.feasibility.support import check
from harness.results.result import CellResult


@dataclass(frozen=True, slots=True)
class Verdict:
    unsupported: str | None = None  # why the engine cannot run it on this hardware class
    no_fit: str | None = None  # why it is predicted not to fit (None when forced)
    caveat: str | None = None  # runs, but not as its name suggests
    footprint: Footprint | None = None
    unpredicted: str | None = None  # why there is no footprint


def judge(config: HarnessConfig, weights: float | None, strict: bool) -> Verdict:
    """The cell's support and fit (``weights``: exact bytes when the file exists);
    ``strict`` (plan=true) makes a model without an architecture an error, not a note. A cell
    that cannot run still gets a footprint where one can be estimated (the plan shows it)."""
    support = check(config)
    unsupported, caveat = support.reason, support.caveat
    impossible, oversubscribed = workload_fits(config)
    unsupported = unsupported or impossible
    if oversubscribed:
        caveat = f"{caveat}; {oversubscribed}" if caveat else oversubscribed
    if config.model.architecture is None and not strict:
        why = f"model {config.model.name} has no architecture in its config"
        return Verdict(unsupported, None, caveat, None, why)
    try:
        footprint = predict(config, weights)
    except UserError as e:
        if unsupported is None:
            raise
        return Verdict(unsupported, None, caveat, None, str(e))
    if footprint is None:
        why = f"runtime {config.runtime.name} as configured is not predictable here"
        return Verdict(unsupported, None, caveat, None, why)
    no_fit = None if config.run.force_fit else footprint.skip_reason(config.hardware.name)
    return Verdict(unsupported, no_fit, caveat, footprint)


OVERSUBSCRIBED = "run.oversubscribe_threads=true"


def workload_fits(config: HarnessConfig) -> tuple[str | None, str | None]:
    """Work the runtime as configured cannot do, found before anything builds or loads: a
    request longer than its context, more threads than the machine's logical cores (allowed
    with run.oversubscribe_threads=true, then returned as a caveat instead)."""
    w, rt = config.workload, config.runtime
    limit = rt.context_limit()
    prompt = w.input_tokens or 1
    if limit is not None and prompt + w.max_new_tokens > limit:
        what = f"workload.input_tokens={w.input_tokens} + " if w.input_tokens else ""
        return (
            f"{what}workload.max_new_tokens={w.max_new_tokens} exceeds the runtime's context "
            f"of {limit} tokens (runtime.n_ctx / max_model_len): every request would fail"
        ), None
    cores = os.cpu_count() or 1
    for name, threads in (
        ("runtime.n_threads", rt.thread_count()),
        ("hardware.threads", config.hardware.threads),
    ):
        if threads is not None and threads > cores:
            why = f"{name}={threads} exceeds this machine's {cores} logical cores"
            if not config.run.oversubscribe_threads:
                return f"{why}; set run.oversubscribe_threads=true to run it anyway", None
            return None, f"{why} ({OVERSUBSCRIBED})"
    return None, None


def memory_record(footprint: Footprint | None, measured: float | None) -> dict[str, float]:
    """Predicted parts, the measured peak and their ratio, as metrics (bytes)."""
    if footprint is None:
        return {}
    out = {
        "memory.predicted_weights_bytes": footprint.weights,
        "memory.predicted_kv_bytes": footprint.kv,
        "memory.predicted_activation_bytes": footprint.activations,
        "memory.predicted_overhead_bytes": footprint.overhead,
        "memory.predicted_peak_bytes": footprint.predicted_peak,
        "memory.usable_bytes": footprint.usable,
        "memory.headroom_bytes": footprint.fit.headroom_bytes,
        "memory.max_kv_tokens": float(footprint.fit.max_tokens),
    }
    if measured is not None and footprint.predicted_peak > 0:
        out["memory.measured_peak_bytes"] = measured
        out["memory.prediction_ratio"] = measured / footprint.predicted_peak
    return out


# Where a cell's measured peak comes from: the GPU process's own memory when NVML lists it,
# else the device's growth over its idle baseline; the process tree's RSS on a CPU.
GPU_PEAKS = ("gpu_peak_proc_bytes", "gpu_peak_used_over_baseline_bytes")
HOST_PEAK = "peak_tree_rss_bytes"


def measured_peak(footprint: Footprint | None, metrics: dict[str, float]) -> float | None:
    if footprint is None:
        return None
    keys = GPU_PEAKS if footprint.where == "gpu" else (HOST_PEAK,)
    return next((metrics[k] for k in keys if metrics.get(k) is not None), None)


def with_memory(
    config: HarnessConfig, planned: Verdict, result: CellResult, artifact: Path
) -> CellResult:
    """The result with the planned memory prediction beside the measured peak: re-predicted
    with the exact weights of the file the cell ran (a GGUF's tensor bytes) when there is one
    and the plan had only an estimate."""
    tags = dict(result.tags)
    if planned.caveat:
        tags["support.caveat"] = planned.caveat
        oversubscribed = [c for c in planned.caveat.split("; ") if OVERSUBSCRIBED in c]
        result = replace(result, flags=[*result.flags, *oversubscribed])
    footprint = planned.footprint
    exact = None
    if artifact.is_file():
        info = json.loads(artifact.read_text())
        if str(info.get("path", "")).endswith(".gguf"):
            exact = float(info["tensor_bytes"])
    if footprint is not None and exact is not None:
        with contextlib.suppress(UserError):
            footprint = predict(config, exact)
    if footprint is None:
        tags["memory.unpredicted"] = planned.unpredicted or "no prediction"
        return replace(result, tags=tags)
    tags["memory.fit"] = footprint.fit.status.value
    tags["memory.weights_source"] = footprint.weights_source
    tags["memory.where"] = footprint.where
    metrics = memory_record(footprint, measured_peak(footprint, result.metrics))
    return replace(result, metrics={**result.metrics, **metrics}, tags=tags)

"""Put one cell's numbers together: request metrics, resources, engine cross-checks, cost,
validity. Pure functions of what the worker recorded, so a result can be rebuilt from the
kept event log and resource samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.config.schema import HarnessConfig
from harness.measure.resources import ResourceLog, throttle_flags, window_metrics
from harness.measure.session import Measurement
from harness.metrics.cost import costs
from harness.metrics.derive import derive
from harness.metrics.stats import summarize
from harness.metrics.validity import judge, self_checks
from harness.results.events import Phase, RepetitionInfo, RequestRecord

# Resource values whose worst repetition is the answer (a peak is a peak); every other
# per-repetition resource value is summarized like a rate.
PEAKS = (
    "peak_tree_rss_bytes",
    "gpu_peak_used_bytes",
    "gpu_peak_used_over_baseline_bytes",
    "gpu_peak_proc_bytes",
    "sample_interval_p99_s",
    "client_peak_rss_bytes",
    "server_peak_rss_bytes",
    "gpu_foreign_procs_max",
    "gpu_foreign_peak_bytes",
)


@dataclass
class Assembled:
    metrics: dict[str, float] = field(default_factory=dict)
    per_rep: dict[str, list[float]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _summary_into(out: Assembled, key: str, values: Sequence[float]) -> None:
    s = summarize(values)
    if s.mean is None:
        return
    out.metrics[key] = s.mean
    extra = {"std": s.std, "cv": s.cv, "ci95_lo": s.ci95_lo, "ci95_hi": s.ci95_hi}
    out.metrics.update({f"{key}_{k}": v for k, v in extra.items() if v is not None})


def resources(
    log: ResourceLog,
    infos: Sequence[RepetitionInfo],
    records: Sequence[RequestRecord],
    out: Assembled,
) -> None:
    """Per measured repetition: the resource window between its marks, energy per token."""
    out.absent.update(log.absent)
    throttled: set[str] = set()
    per_rep: dict[str, list[float]] = {}
    for info in infos:
        if info.phase != Phase.measure:
            continue
        label = f"{info.phase}-{info.repetition}"
        start, end = f"start:{label}", f"end:{label}"
        values, absent = window_metrics(log, start, end)
        out.absent.update({k: v for k, v in absent.items() if k not in out.absent})
        tokens = sum(
            r.output_tokens
            for r in records
            if r.repetition == info.repetition and r.phase == Phase.measure and r.ok
        )
        for source in ("gpu", "cpu"):
            joules = values.get(f"{source}_energy_j")
            if joules is not None and tokens:
                values[f"{source}_energy_per_output_token_j"] = joules / tokens
        for key, value in values.items():
            per_rep.setdefault(key, []).append(value)
        throttled.update(throttle_flags(log, start, end))
    out.per_rep.update(per_rep)
    for key, vals in per_rep.items():
        if key in PEAKS:
            out.metrics[key] = max(vals)
        elif key != "samples":
            _summary_into(out, key, vals)
    if throttled:
        out.flags.append(f"gpu throttled during measurement: {', '.join(sorted(throttled))}")


def engine_check(meas: Measurement, out: Assembled) -> None:
    """The runtime's own decode rate next to the harness's, per repetition and overall."""
    for key, values in meas.per_rep.items():
        out.per_rep[key] = values
        _summary_into(out, key, values)
    harness_rates = out.per_rep.get("decode_tok_s", [])
    engine_rates = meas.per_rep.get("engine_decode_tok_s", [])
    if harness_rates and len(engine_rates) == len(harness_rates):
        ratios = [h / e for h, e in zip(harness_rates, engine_rates, strict=True)]
        out.per_rep["decode_fidelity_ratio"] = ratios
        _summary_into(out, "decode_fidelity_ratio", ratios)
    else:
        out.absent["decode_fidelity_ratio"] = "the runtime reports no decode counters"


def assemble(
    cfg: HarnessConfig,
    meas: Measurement,
    log: ResourceLog,
    preallocates: bool,
    *,
    client: bool = False,
    external: bool = False,
) -> Assembled:
    """Every number of a run from its raw events and resource log, with the verdict and flags.
    ``client``: the worker only drives a server; ``external``: that server runs elsewhere."""
    out = Assembled()
    derived = derive(meas.records, cfg.workload.slo)
    out.metrics.update(derived.metrics)
    out.per_rep.update(derived.per_rep)
    out.absent.update(derived.absent)
    out.metrics.update(meas.metrics)
    out.absent.update(meas.absent)
    if meas.probes:
        out.per_rep["probe.rate_req_s"] = [r for r, _ in meas.probes]
        out.per_rep["probe.goodput_fraction"] = [f for _, f in meas.probes]
    engine_check(meas, out)
    reps = [i for i in meas.infos if i.phase == Phase.measure]
    lags = [i.client["loop_lag_max_s"] for i in reps if "loop_lag_max_s" in i.client]
    if lags and len(lags) == len(reps):
        out.per_rep["client_loop_lag_max_s"] = lags
        out.metrics["client_loop_lag_max_s"] = max(lags)
    resources(log, meas.infos, meas.records, out)
    verdict = judge(meas.infos, meas.records, cfg.workload, derived.unstable)
    out.problems, out.flags = verdict.problems, verdict.flags + out.flags
    if meas.stopped:
        out.problems.insert(0, meas.stopped)
    out.flags += self_checks(
        cfg.workload, out.per_rep, meas.infos, client=client, external=external
    )
    if preallocates:
        out.flags.append(
            "runtime preallocates device memory: peak VRAM is its setting, not the need"
        )
    cost_metrics, cost_absent = costs(cfg.cost, cfg.hardware, out.metrics)
    out.metrics.update(cost_metrics)
    out.absent.update(cost_absent)
    return out

"""Metrics derived from the raw event log; every definition is written in docs/metrics.md.

Everything here is a pure function of ``RequestRecord`` lists, so any estimator can be
recomputed later from the kept events. Warmup records never enter a statistic. Undefined
values are absent (with a reason where a reader would look for them), never 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.metrics.stats import instability, min_samples_for, percentile, summarize
from harness.results.clock import seconds
from harness.results.events import CountSource, Phase, RequestRecord

# Bump when a definition below changes: it is part of every cell key and logged as a tag.
# 1: single-stream TTFT/ITL/e2e, p50/p95. 2: TTFCT, ITL per chunk, input/total throughput,
#    goodput, p90/p99, sample-count gating, repetition CIs, send lag.
ESTIMATOR_VERSION = "2"
PERCENTILES = (50, 90, 95, 99)
# Per-repetition values summarized across repetitions (mean, median, std, CV, t-CI).
REP_METRICS = (
    "output_throughput_tok_s",
    "input_throughput_tok_s",
    "total_throughput_tok_s",
    "request_throughput_req_s",
    "goodput_req_s",
    "goodput_fraction",
    "decode_tok_s",
    "ttft_mean_s",
    "tpot_mean_s",
    "e2e_mean_s",
)
# Checked for instability across repetitions (pyperf's rules).
STABILITY_METRICS = (
    "output_throughput_tok_s",
    "request_throughput_req_s",
    "ttft_mean_s",
    "tpot_mean_s",
)


def _token_chunks(r: RequestRecord) -> list[tuple[int, int]]:
    return [(t, k) for t, k in zip(r.chunk_ns, r.chunk_tokens, strict=True) if k > 0]


def ttft_s(r: RequestRecord) -> float | None:
    """Send → first chunk carrying ≥ 1 generated token (reasoning included)."""
    chunks = _token_chunks(r)
    return seconds(chunks[0][0] - r.t_send_ns) if r.streamed and chunks else None


def ttfct_s(r: RequestRecord) -> float | None:
    """Send → first chunk with user-visible content (after any reasoning)."""
    if not r.streamed or r.t_first_content_ns is None:
        return None
    return seconds(r.t_first_content_ns - r.t_send_ns)


def e2e_s(r: RequestRecord) -> float | None:
    """Send → last chunk carrying generated tokens (offline: the batch's completion)."""
    chunks = _token_chunks(r)
    return seconds(chunks[-1][0] - r.t_send_ns) if chunks else None


def tpot_s(r: RequestRecord) -> float | None:
    """(e2e − TTFT) / (output tokens − 1); undefined below two tokens or without streaming."""
    ttft, e2e = ttft_s(r), e2e_s(r)
    if ttft is None or e2e is None or r.output_tokens < 2:
        return None
    return (e2e - ttft) / (r.output_tokens - 1)


def itl_token_s(r: RequestRecord) -> list[float]:
    """Per token: each gap between consecutive token chunks split evenly over the later
    chunk's k tokens (k samples of gap/k). Tokens of the first chunk have no sample."""
    chunks = _token_chunks(r) if r.streamed else []
    out: list[float] = []
    for (t0, _), (t1, k) in itertools.pairwise(chunks):
        out.extend([seconds(t1 - t0) / k] * k)
    return out


def itl_chunk_s(r: RequestRecord) -> list[float]:
    """Per chunk: raw gaps between consecutive token chunks (vLLM's ITL)."""
    chunks = _token_chunks(r) if r.streamed else []
    return [seconds(t1 - t0) for (t0, _), (t1, _) in itertools.pairwise(chunks)]


def itl_max_s(r: RequestRecord) -> float | None:
    """The longest stall between token chunks of one request."""
    gaps = itl_chunk_s(r)
    return max(gaps) if gaps else None


def send_lag_s(r: RequestRecord) -> float:
    """How late the load generator handed the request over: send − scheduled − slot wait."""
    return seconds(r.t_send_ns - r.t_scheduled_ns - r.queue_ns)


SLO_FUNCTIONS: dict[str, Callable[[RequestRecord], float | None]] = {
    "ttft_s": ttft_s,
    "ttfct_s": ttfct_s,
    "tpot_s": tpot_s,
    "e2e_s": e2e_s,
    "itl_max_s": itl_max_s,
}


def meets_slo(r: RequestRecord, slo: Mapping[str, float]) -> bool:
    """Every configured threshold met; a value that is undefined for the request is not met."""
    for name, limit in slo.items():
        value = SLO_FUNCTIONS[name](r)
        if value is None or value > limit:
            return False
    return r.ok


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _defined(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def repetition(records: Sequence[RequestRecord], slo: Mapping[str, float]) -> dict[str, float]:
    """One repetition's numbers over its measured requests. Window: first measured send →
    last measured completion; failed requests count in no numerator."""
    measured = [r for r in records if r.phase == Phase.measure]
    done = [r for r in measured if r.ok and r.chunk_ns]
    if not done:
        return {}
    window = seconds(max(r.chunk_ns[-1] for r in done) - min(r.t_send_ns for r in measured))
    out_tok = sum(r.output_tokens for r in done)
    # a prompt nobody could count leaves the input numbers undefined, never too low
    counted = all(r.prompt_count_source != CountSource.unknown for r in done)
    in_tok = sum(r.prompt_tokens for r in done) if counted else None
    ttfts = _defined([ttft_s(r) for r in done])
    decode_tokens = sum(r.output_tokens - 1 for r in done if ttft_s(r) is not None)
    decode_time = sum(
        e2e - t for r in done if (t := ttft_s(r)) is not None and (e2e := e2e_s(r)) is not None
    )
    values: dict[str, float | None] = {
        "window_s": window,
        "requests": float(len(done)),
        "output_throughput_tok_s": out_tok / window,
        "input_throughput_tok_s": in_tok / window if in_tok is not None else None,
        "total_throughput_tok_s": (in_tok + out_tok) / window if in_tok is not None else None,
        "request_throughput_req_s": len(done) / window,
        "decode_tok_s": decode_tokens / decode_time if decode_time > 0 else None,
        "ttft_mean_s": _mean(ttfts),
        "tpot_mean_s": _mean(_defined([tpot_s(r) for r in done])),
        "e2e_mean_s": _mean(_defined([e2e_s(r) for r in done])),
        "send_lag_max_s": max(send_lag_s(r) for r in measured),
    }
    if slo:
        good = sum(meets_slo(r, slo) for r in measured)
        values["goodput_req_s"] = good / window
        values["goodput_fraction"] = good / len(measured)
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class Derived:
    metrics: dict[str, float] = field(default_factory=dict)
    per_rep: dict[str, list[float]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)  # metric -> why it is not reported
    unstable: list[str] = field(default_factory=list)  # "metric: reason"


POOLED: dict[str, Callable[[RequestRecord], list[float]]] = {
    "ttft": lambda r: _defined([ttft_s(r)]),
    "ttfct": lambda r: _defined([ttfct_s(r)]),
    "itl": itl_token_s,
    "itl_chunk": itl_chunk_s,
    "tpot": lambda r: _defined([tpot_s(r)]),
    "e2e": lambda r: _defined([e2e_s(r)]),
    "send_lag": lambda r: [send_lag_s(r)],
}


def pooled_percentiles(done: Sequence[RequestRecord], out: Derived) -> None:
    """Percentiles over every measured value of every repetition, each reported only when
    the sample is large enough for its maximum to bound it with 95 % confidence."""
    for name, series in POOLED.items():
        values = [v for r in done for v in series(r)]
        out.metrics[f"{name}_samples"] = float(len(values))
        if not values:
            out.absent[f"{name}_p50_s"] = "no request produced this value (e.g. not streamed)"
            continue
        for q in PERCENTILES:
            need = min_samples_for(q)
            p = percentile(values, q)
            if len(values) >= need and p is not None:
                out.metrics[f"{name}_p{q}_s"] = p
            else:
                out.absent[f"{name}_p{q}_s"] = f"{len(values)} samples, p{q} needs >= {need}"
        out.metrics[f"{name}_max_s"] = max(values)


def derive(records: Sequence[RequestRecord], slo: Mapping[str, float] | None = None) -> Derived:
    """Headline metrics: per-repetition values summarized across repetitions, and pooled
    latency percentiles over all measured requests."""
    slo = slo or {}
    measured = [r for r in records if r.phase == Phase.measure]
    out = Derived()
    reps = sorted({r.repetition for r in measured})
    for rep in reps:
        for key, value in repetition([r for r in measured if r.repetition == rep], slo).items():
            out.per_rep.setdefault(key, []).append(value)
    for key in REP_METRICS:
        s = summarize(out.per_rep.get(key, []))
        if s.mean is None:
            continue
        out.metrics[key] = s.mean
        extra = {
            "median": s.median,
            "std": s.std,
            "cv": s.cv,
            "ci95_lo": s.ci95_lo,
            "ci95_hi": s.ci95_hi,
        }
        out.metrics.update({f"{key}_{k}": v for k, v in extra.items() if v is not None})
    if not slo:
        out.absent["goodput_req_s"] = "no SLO configured (workload.slo)"
    for key in STABILITY_METRICS:
        out.unstable += [f"{key}: {why}" for why in instability(out.per_rep.get(key, []))]
    done = [r for r in measured if r.ok and r.chunk_ns]
    if any(r.prompt_count_source == CountSource.unknown for r in done):
        why = "the server reports no prompt length and has no tokenize endpoint"
        for key in ("input_throughput_tok_s", "total_throughput_tok_s"):
            out.absent[key] = why
    pooled_percentiles(done, out)
    out.metrics["requests"] = float(len(done))
    out.metrics["output_tokens"] = float(sum(r.output_tokens for r in done))
    out.metrics["repetitions"] = float(len(reps))
    mismatched = [r for r in done if r.streamed and sum(r.chunk_tokens) != r.output_tokens]
    if done:
        out.metrics["token_count_mismatch_fraction"] = len(mismatched) / len(done)
    return out

"""Metrics derived from raw request records; definitions in docs/metrics.md.

Every number here is a pure function of ``RequestRecord`` lists, so any estimator can be
recomputed later from the kept events. Warmup records never enter these statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.clock import seconds
from harness.result import RequestRecord
from harness.stats import percentile, summarize

# Bump when a definition below changes: it is part of every cell key and logged as a tag.
ESTIMATOR_VERSION = "1"
PERCENTILES = (50, 95)
# Rates are computed per repetition and summarized across repetitions (mean, sample std, CV);
# latency percentiles pool every measured request (per-repetition values are kept as steps).
RATES = ("output_throughput_tok_s", "request_throughput_req_s")


def ttft_s(r: RequestRecord) -> float:
    """Issue -> first chunk carrying at least one generated token."""
    return seconds(r.chunk_ns[0] - r.t_send_ns)


def e2e_s(r: RequestRecord) -> float:
    """Issue -> last chunk."""
    return seconds(r.chunk_ns[-1] - r.t_send_ns)


def tpot_s(r: RequestRecord) -> float | None:
    """(e2e - TTFT) / (output tokens - 1); undefined for a single token."""
    if r.output_tokens < 2:
        return None
    return (e2e_s(r) - ttft_s(r)) / (r.output_tokens - 1)


def itl_s(r: RequestRecord) -> list[float]:
    """Per token: each gap between consecutive chunks, split evenly over the chunk's k tokens
    (k samples of gap / k). Tokens arriving in the first chunk have no gap and no sample."""
    out: list[float] = []
    for i in range(1, len(r.chunk_ns)):
        k = r.chunk_tokens[i]
        out.extend([seconds(r.chunk_ns[i] - r.chunk_ns[i - 1]) / k] * k)
    return out


def _complete(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.error is None and r.chunk_ns]


def repetition(records: Sequence[RequestRecord]) -> dict[str, float]:
    """One repetition's numbers. Window: first issue -> last chunk of the repetition."""
    done = _complete(records)
    if not done:
        return {}
    window = seconds(max(r.chunk_ns[-1] for r in done) - min(r.t_send_ns for r in done))
    itl = [x for r in done for x in itl_s(r)]
    out = {
        "window_s": window,
        "output_throughput_tok_s": sum(r.output_tokens for r in done) / window,
        "request_throughput_req_s": len(done) / window,
        "ttft_p50_s": percentile([ttft_s(r) for r in done], 50),
        "itl_p50_s": percentile(itl, 50),
        "e2e_p50_s": percentile([e2e_s(r) for r in done], 50),
    }
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class Derived:
    metrics: dict[str, float] = field(default_factory=dict)
    per_rep: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def derive(records: Sequence[RequestRecord]) -> Derived:
    """Headline metrics (pooled over measured repetitions), per-repetition values, and the
    problems that make a cell invalid (errors, generation length not met)."""
    measured = [r for r in records if r.phase == "measure"]
    out = Derived(problems=_problems(measured))
    reps = sorted({r.repetition for r in measured})
    for rep in reps:
        for key, value in repetition([r for r in measured if r.repetition == rep]).items():
            out.per_rep.setdefault(key, []).append(value)
    for key in RATES:
        s = summarize(out.per_rep.get(key, []))
        if s.mean is None:
            continue
        out.metrics[key] = s.mean
        if s.std is not None and s.cv is not None:
            out.metrics[f"{key}_std"] = s.std
            out.metrics[f"{key}_cv"] = s.cv
    done = _complete(measured)
    pooled = {
        "ttft": [ttft_s(r) for r in done],
        "itl": [x for r in done for x in itl_s(r)],
        "e2e": [e2e_s(r) for r in done],
    }
    for name, values in pooled.items():
        for q in PERCENTILES:
            p = percentile(values, q)
            if p is not None:
                out.metrics[f"{name}_p{q}_s"] = p
        out.metrics[f"{name}_samples"] = len(values)
    tpots = [t for r in done if (t := tpot_s(r)) is not None]
    if tpots:
        out.metrics["tpot_mean_s"] = sum(tpots) / len(tpots)
    out.metrics["requests"] = len(done)
    out.metrics["output_tokens"] = sum(r.output_tokens for r in done)
    out.metrics["repetitions"] = len(reps)
    return out


def _problems(measured: Sequence[RequestRecord]) -> list[str]:
    """Errors grouped by message, then generation-length shortfalls, as readable reasons."""
    total = len(measured)
    errors = Counter(r.error for r in measured if r.error is not None)
    problems = [f"{n} of {total} requests failed: {msg}" for msg, n in errors.most_common()]
    wrong = [r for r in measured if r.error is None and r.output_tokens != r.target_tokens]
    if wrong:
        worst = min(wrong, key=lambda r: r.output_tokens)
        problems.append(
            f"{len(wrong)} of {total} requests did not produce the forced length "
            f"(e.g. repetition {worst.repetition} request {worst.index}: "
            f"{worst.output_tokens} of {worst.target_tokens} tokens)"
        )
    return problems

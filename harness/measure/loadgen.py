"""Load generation: drive a loaded runner through one repetition and record raw events.

The driver (``harness.measure.drivers``) is chosen from the runner's declared capabilities:
in-process engines from this thread, offline batches through ``runner.generate``, runners
declaring ``async_streaming`` (network clients) from an event loop. A repetition stops early
after ``MAX_FAILURES`` failed requests: the run is INVALID already.

The clock is read by the harness, here, when a request is handed over and when each chunk
arrives; nothing is timed inside an adapter. ``t_scheduled_ns`` is when the load pattern
wanted a request sent, ``queue_ns`` how long it then waited for a free slot, so the send lag
``t_send − t_scheduled − queue`` measures only the load generator being late.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace

from harness.config.schema import LoadMode, WorkloadConfig
from harness.measure.drivers import (
    MAX_FAILURES,
    Failures,
    Pattern,
    drive_async,
    drive_offline,
    drive_sync,
)
from harness.results.clock import now_ns
from harness.results.events import RepetitionInfo, RequestRecord
from runners import AsyncStreaming, BuildsRequests, Request, Runner

NS = 1_000_000_000


def pattern_for(
    workload: WorkloadConfig,
    max_concurrency: int | None,
    rate: float | None = None,
    seed_offset: int = 0,
) -> Pattern:
    """The pattern of one repetition; ``rate`` overrides the workload's (rate sweep probes)."""
    mode = workload.mode
    rate = rate if rate is not None else workload.rate
    if mode is LoadMode.rate_sweep:
        mode = LoadMode.gamma if workload.burstiness != 1.0 else LoadMode.poisson
    caps = [c for c in (workload.max_concurrency, max_concurrency) if c is not None]
    cap = min(caps) if caps else None
    p = Pattern(
        mode=mode,
        requests=workload.requests_per_repetition,
        warmup_requests=workload.warmup_requests,
        min_duration_s=workload.min_duration_s,
        concurrency=workload.concurrency,
        rate=rate,
        burstiness=workload.burstiness,
        cap=cap,
        seed=workload.seed + seed_offset,
    )
    p.params = {"seed": float(p.seed)}
    if mode is LoadMode.closed_loop:
        p.params["concurrency"] = float(p.concurrency)
    elif mode in (LoadMode.poisson, LoadMode.gamma):
        assert rate is not None
        p.params.update(rate_req_s=rate, burstiness=p.burstiness)
        if cap is not None:
            p.params["max_concurrency"] = float(cap)
    return p


def build_requests(
    runner: Runner, prompts: Sequence[str], max_new_tokens: int, input_tokens: int | None
) -> list[Request]:
    """Tokenize each prompt once; with ``input_tokens`` tile its ids to exactly that length so
    every request prefills the same number of tokens. A runner that prefills something other
    than tiled ids (a server sent text) builds its requests itself."""
    if isinstance(runner, BuildsRequests):
        return [runner.request_for(text, max_new_tokens, input_tokens) for text in prompts]
    out = []
    for text in prompts:
        ids = runner.tokenize(text)
        if input_tokens is not None:
            ids = (ids * math.ceil(input_tokens / max(len(ids), 1)))[:input_tokens]
        out.append(Request(prompt_ids=tuple(ids), max_new_tokens=max_new_tokens, prompt=text))
    return out


def run_repetition(
    runner: Runner, requests: Sequence[Request], p: Pattern, phase: str, rep: int
) -> tuple[RepetitionInfo, list[RequestRecord]]:
    """One repetition under pattern ``p``; its records say phase "measure" except warmup
    requests, whatever ``phase`` the repetition itself has (see ``relabel``)."""
    t_start = now_ns()
    lags: list[float] = []
    failures = Failures()
    if p.mode is LoadMode.offline:
        records = drive_offline(runner, requests, p, rep, failures)
    elif runner.capabilities.async_streaming:
        assert isinstance(runner, AsyncStreaming)
        records = asyncio.run(drive_async(runner, requests, p, rep, lags, failures))
    else:
        records = drive_sync(runner, requests, p, rep, failures)
    t_end = now_ns()
    client: dict[str, float] = {}
    if lags:
        client = {"loop_lag_max_s": max(lags), "loop_lag_mean_s": sum(lags) / len(lags)}
    if failures.n >= MAX_FAILURES:
        client["stopped_early"] = float(failures.n)
    info = RepetitionInfo(
        phase=phase,
        repetition=rep,
        mode=p.mode.value,
        t_start_ns=t_start,
        t_end_ns=t_end,
        requests=len(records),
        params=dict(p.params),
        client=client,
    )
    return info, records


def relabel(records: Sequence[RequestRecord], phase: str) -> list[RequestRecord]:
    """Mark every request of a warmup or probe repetition so no statistic ever counts it."""
    return [r if r.phase == phase else replace(r, phase=phase) for r in records]

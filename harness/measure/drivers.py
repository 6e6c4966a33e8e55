"""The drivers of one repetition: how requests are handed to a runner and each chunk stamped.

- in-process engines (one stream at a time) are driven from the calling thread: closed loop
  with one stream, open-loop arrivals that queue behind the busy engine;
- offline batches go through ``runner.generate``;
- runners declaring ``async_streaming`` (network clients) are driven from an event loop, with
  any number of closed-loop streams or open-loop arrivals under an optional concurrency cap,
  while a probe measures the loop's own lag.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from harness.config.schema import LoadMode
from harness.results.clock import now_ns
from harness.results.events import CountSource, Phase, RequestRecord
from runners import AsyncStreaming, Request, Runner

NS = 1_000_000_000
# A failed request already makes the run INVALID; after this many a repetition stops sending
# (a server answering only errors, a workload the runtime refuses) rather than hammer on until
# its minimum duration. The repetition says so (``RepetitionInfo.client["stopped_early"]``).
MAX_FAILURES = 8


@dataclass
class Pattern:
    """How one repetition sends: mode, rate and in-flight limit after capability checks."""

    mode: LoadMode
    requests: int
    warmup_requests: int
    min_duration_s: float
    concurrency: int = 1  # closed loop
    rate: float | None = None  # open loop
    burstiness: float = 1.0
    cap: int | None = None  # open loop: requests in flight
    seed: int = 0
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Slot:
    """A request's place in a repetition, decided before anything is sent."""

    index: int
    prompt_index: int
    phase: str  # warmup requests lead each repetition and are never counted


def inter_arrivals(rate: float, shape: float, rng: random.Random) -> Iterator[float]:
    """Gaps between arrivals, mean 1/rate: gamma with shape k and scale 1/(rate·k); k = 1 is
    Poisson, k < 1 burstier, k > 1 more regular."""
    scale = 1.0 / (rate * shape)
    while True:
        yield rng.gammavariate(shape, scale)


def slots(p: Pattern) -> Iterator[Slot]:
    """Warmup slots, then measured ones, then more measured ones without end: drivers stop
    once the request count and the minimum duration are both reached."""
    for i in range(10**12):
        phase = Phase.warmup if i < p.warmup_requests else Phase.measure
        yield Slot(index=i, prompt_index=i, phase=phase.value)


class _Recorder:
    """Accumulates one request's chunks with the harness clock."""

    __slots__ = (
        "chunk_ns",
        "chunk_tokens",
        "first_content",
        "usage_in",
        "usage_out",
        "usage_source",
    )

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.chunk_tokens: list[int] = []
        self.first_content: int | None = None
        self.usage_in: int | None = None
        self.usage_out: int | None = None
        self.usage_source = CountSource.server_usage


def _record(
    slot: Slot,
    rep: int,
    request: Request,
    t_sched: int,
    queue: int,
    t_send: int,
    rec: _Recorder,
    error: str | None,
    *,
    engine_counts: bool,
    streamed: bool = True,
) -> RequestRecord:
    counted = sum(rec.chunk_tokens)
    if engine_counts:
        out_n, out_src = counted, CountSource.engine
    elif rec.usage_out is not None:
        out_n, out_src = rec.usage_out, rec.usage_source
    else:
        out_n, out_src = counted, CountSource.chunks
    in_n, in_src = len(request.prompt_ids), CountSource.engine
    if rec.usage_in is not None and not engine_counts:
        in_n, in_src = rec.usage_in, CountSource.server_usage
    elif request.prompt_tokens is not None:  # the server's count, taken when it was built
        in_n, in_src = request.prompt_tokens, CountSource(request.prompt_source)
    elif request.prompt_source != CountSource.engine:
        in_n, in_src = 0, CountSource(request.prompt_source)
    return RequestRecord(
        phase=slot.phase,
        repetition=rep,
        index=slot.index,
        prompt_index=slot.prompt_index,
        t_scheduled_ns=t_sched,
        queue_ns=queue,
        t_send_ns=t_send,
        chunk_ns=tuple(rec.chunk_ns),
        chunk_tokens=tuple(rec.chunk_tokens),
        t_first_content_ns=rec.first_content,
        prompt_tokens=in_n,
        prompt_count_source=in_src.value,
        output_tokens=out_n,
        output_count_source=out_src.value,
        target_tokens=request.max_new_tokens,
        streamed=streamed,
        status="ok" if error is None else "error",
        error=error,
    )


def _sync_request(runner: Runner, request: Request) -> tuple[_Recorder, str | None]:
    rec = _Recorder()
    try:
        for chunk in runner.stream(request):
            t = now_ns()
            rec.chunk_ns.append(t)
            rec.chunk_tokens.append(len(chunk))
            if rec.first_content is None and len(chunk):
                rec.first_content = t
    except Exception as e:  # one failing request is recorded, not fatal to the repetition
        return rec, f"{type(e).__name__}: {e}"
    return rec, None


def _sleep_until(t_ns: int) -> None:
    delay = t_ns - now_ns()
    if delay > 0:
        time.sleep(delay / NS)


@dataclass
class Failures:
    n: int = 0

    def add(self, record: RequestRecord) -> RequestRecord:
        self.n += not record.ok
        return record


def _enough(p: Pattern, sent: int, t0: int, failures: Failures) -> bool:
    if failures.n >= MAX_FAILURES:
        return True
    return sent >= p.requests and now_ns() - t0 >= p.min_duration_s * NS


def drive_sync(
    runner: Runner, requests: Sequence[Request], p: Pattern, rep: int, failures: Failures
) -> list[RequestRecord]:
    """One stream from this thread. Open-loop arrivals that find the engine busy wait for it
    (``queue_ns``), as they would behind any single-stream server."""
    rng = random.Random(p.seed)
    gaps = inter_arrivals(p.rate, p.burstiness, rng) if p.rate is not None else None
    records: list[RequestRecord] = []
    t0 = now_ns()
    t_next = t0
    for slot in slots(p):
        if _enough(p, slot.index, t0, failures):
            break
        request = requests[slot.prompt_index % len(requests)]
        t_free = now_ns()
        t_sched = t_next if gaps is not None else t_free
        _sleep_until(t_sched)
        queue = max(0, t_free - t_sched)
        t_send = now_ns()
        rec, error = _sync_request(runner, request)
        records.append(
            failures.add(
                _record(slot, rep, request, t_sched, queue, t_send, rec, error, engine_counts=True)
            )
        )
        if gaps is not None:
            t_next += int(next(gaps) * NS)
    return records


def drive_offline(
    runner: Runner, requests: Sequence[Request], p: Pattern, rep: int, failures: Failures
) -> list[RequestRecord]:
    """Whole batches through ``generate``; batches repeat until the minimum duration."""
    records: list[RequestRecord] = []
    t0 = now_ns()
    it = slots(p)
    while not _enough(p, len(records), t0, failures):
        batch = [next(it) for _ in range(max(p.requests, 1))]
        reqs = [requests[s.prompt_index % len(requests)] for s in batch]
        t_send = now_ns()
        try:
            outs, error = runner.generate(reqs), None
        except Exception as e:
            outs, error = [[] for _ in reqs], f"{type(e).__name__}: {e}"
        t_done = now_ns()
        # a network client's generate() knows the server's usage counts, not token ids
        exact = not runner.capabilities.async_streaming
        for slot, req, out in zip(batch, reqs, outs, strict=True):
            rec = _Recorder()
            if out:
                rec.chunk_ns, rec.chunk_tokens, rec.first_content = [t_done], [len(out)], t_done
                rec.usage_out = None if exact else len(out)
            record = _record(
                slot, rep, req, t_send, 0, t_send, rec, error, engine_counts=exact, streamed=False
            )
            records.append(failures.add(record))
    return records


async def _async_request(
    runner: AsyncStreaming,
    slot: Slot,
    rep: int,
    request: Request,
    t_sched: int,
    sem: asyncio.Semaphore | None,
) -> RequestRecord:
    t_wait = now_ns()
    if sem is not None:
        await sem.acquire()
    queue = now_ns() - t_wait
    rec = _Recorder()
    error = None
    t_send = now_ns()
    try:
        async for d in runner.astream(request):
            t = now_ns()
            rec.chunk_ns.append(t)
            rec.chunk_tokens.append(d.tokens)
            if rec.first_content is None and d.content:
                rec.first_content = t
            if d.output_tokens is not None:
                rec.usage_out, rec.usage_source = d.output_tokens, CountSource(d.output_source)
            if d.prompt_tokens is not None:
                rec.usage_in = d.prompt_tokens
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        if sem is not None:
            sem.release()
    return _record(slot, rep, request, t_sched, queue, t_send, rec, error, engine_counts=False)


LAG_TICK_S = 0.005  # the event-loop lag probe's sleep


async def _watch_lag(lags: list[float]) -> None:
    """How late the event loop wakes a sleeper: a busy or starved client delays every chunk
    timestamp by as much, so this is the error bar on the client's own clock readings."""
    while True:
        t = now_ns()
        await asyncio.sleep(LAG_TICK_S)
        lags.append(max(0.0, (now_ns() - t) / NS - LAG_TICK_S))


async def drive_async(
    runner: AsyncStreaming,
    requests: Sequence[Request],
    p: Pattern,
    rep: int,
    lags: list[float],
    failures: Failures,
) -> list[RequestRecord]:
    watcher = asyncio.create_task(_watch_lag(lags))
    try:
        return await _drive_async_load(runner, requests, p, rep, failures)
    finally:
        watcher.cancel()


async def _drive_async_load(
    runner: AsyncStreaming, requests: Sequence[Request], p: Pattern, rep: int, failures: Failures
) -> list[RequestRecord]:
    it = slots(p)
    t0 = now_ns()
    if p.mode is LoadMode.closed_loop:
        return await _closed_loop_async(runner, requests, p, rep, it, t0, failures)
    assert p.rate is not None
    gaps = inter_arrivals(p.rate, p.burstiness, random.Random(p.seed))
    sem = asyncio.Semaphore(p.cap) if p.cap is not None else None
    tasks: list[asyncio.Task[RequestRecord]] = []
    t_next = t0
    for slot in it:
        if _enough(p, slot.index, t0, failures):
            break
        delay = t_next - now_ns()
        if delay > 0:
            await asyncio.sleep(delay / NS)
        request = requests[slot.prompt_index % len(requests)]
        task = asyncio.create_task(_async_request(runner, slot, rep, request, t_next, sem))
        task.add_done_callback(lambda t: failures.add(t.result()) if not t.cancelled() else None)
        tasks.append(task)
        t_next += int(next(gaps) * NS)
    return list(await asyncio.gather(*tasks))


async def _closed_loop_async(
    runner: AsyncStreaming,
    requests: Sequence[Request],
    p: Pattern,
    rep: int,
    it: Iterator[Slot],
    t0: int,
    failures: Failures,
) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    sent = 0

    async def stream_worker() -> None:
        nonlocal sent
        while not _enough(p, sent, t0, failures):
            slot = next(it)
            sent += 1
            request = requests[slot.prompt_index % len(requests)]
            record = await _async_request(runner, slot, rep, request, now_ns(), None)
            records.append(failures.add(record))

    await asyncio.gather(*(stream_worker() for _ in range(p.concurrency)))
    return sorted(records, key=lambda r: r.index)

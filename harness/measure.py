"""Drive a loaded runner through a workload and record raw events with the harness clock.

Requests run one at a time (single stream). The clock is read when a request is issued and
when each chunk of token ids comes out of ``runner.stream``; nothing is timed inside an
adapter. Warmup repetitions run first and are recorded with phase="warmup".
"""

from __future__ import annotations

from harness.clock import now_ns
from harness.config import WorkloadConfig
from harness.result import RequestRecord
from runners import Request, Runner


def run_request(
    runner: Runner, request: Request, phase: str, repetition: int, index: int
) -> RequestRecord:
    chunk_ns: list[int] = []
    chunk_tokens: list[int] = []
    error = None
    t_send = now_ns()
    try:
        for chunk in runner.stream(request):
            chunk_ns.append(now_ns())
            chunk_tokens.append(len(chunk))
    except Exception as e:  # one failing request is recorded, not fatal to the cell
        error = f"{type(e).__name__}: {e}"
    return RequestRecord(
        phase=phase,
        repetition=repetition,
        index=index,
        prompt_tokens=len(request.prompt_ids),
        target_tokens=request.max_new_tokens,
        output_tokens=sum(chunk_tokens),
        count_source="engine",
        t_send_ns=t_send,
        chunk_ns=tuple(chunk_ns),
        chunk_tokens=tuple(chunk_tokens),
        error=error,
    )


def run_workload(runner: Runner, workload: WorkloadConfig) -> list[RequestRecord]:
    """Warmup repetitions, then measured ones; every request of every repetition recorded."""
    requests = [
        Request(prompt_ids=tuple(runner.tokenize(p)), max_new_tokens=workload.max_new_tokens)
        for p in workload.prompts
    ]
    phases = [("warmup", r) for r in range(workload.warmup_repetitions)]
    phases += [("measure", r) for r in range(workload.repetitions)]
    records = []
    for phase, rep in phases:
        for i, request in enumerate(requests):
            records.append(run_request(runner, request, phase, rep, i))
    return records

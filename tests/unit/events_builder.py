"""Hand-built request records for estimator tests (times in milliseconds)."""

from harness.results.events import RequestRecord

MS = 1_000_000


def rec(
    chunks_ms,
    tokens=None,
    *,
    rep=0,
    index=0,
    phase="measure",
    target=None,
    error=None,
    send=0.0,
    scheduled=None,
    queue=0.0,
    content_ms=None,
    prompt=5,
    output=None,
    source="engine",
    streamed=True,
):
    tokens = list(tokens) if tokens is not None else [1] * len(chunks_ms)
    produced = sum(tokens) if output is None else output
    first_content = content_ms
    if first_content is None:
        first_content = next((c for c, k in zip(chunks_ms, tokens, strict=True) if k), None)
    return RequestRecord(
        phase=phase,
        repetition=rep,
        index=index,
        prompt_index=index,
        t_scheduled_ns=int((send if scheduled is None else scheduled) * MS),
        queue_ns=int(queue * MS),
        t_send_ns=int(send * MS),
        chunk_ns=tuple(int(c * MS) for c in chunks_ms),
        chunk_tokens=tuple(tokens),
        t_first_content_ns=None if first_content is None else int(first_content * MS),
        prompt_tokens=prompt,
        prompt_count_source="engine",
        output_tokens=produced,
        output_count_source=source,
        target_tokens=target if target is not None else produced,
        streamed=streamed,
        status="ok" if error is None else "error",
        error=error,
    )

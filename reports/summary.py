"""The sweep's closing table, as Markdown (readable in a terminal and on the parent run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.result import Outcome


def _num(fmt: str, scale: float = 1.0) -> Callable[[float | None], str]:
    return lambda v: "-" if v is None else format(v * scale, fmt)


COLUMNS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("tok/s", "output_throughput_tok_s", _num(".1f")),
    ("± std", "output_throughput_tok_s_std", _num(".1f")),
    ("TTFT p95 ms", "ttft_p95_s", _num(".1f", 1e3)),
    ("ITL p95 ms", "itl_p95_s", _num(".2f", 1e3)),
    ("e2e p95 s", "e2e_p95_s", _num(".3f")),
    ("peak RSS MiB", "peak_rss_bytes", _num(".0f", 1 / 2**20)),
    ("bpw", "model_bpw", _num(".2f")),
    ("file MiB", "model_file_bytes", _num(".1f", 1 / 2**20)),
)


def summary_table(outcomes: Sequence[Outcome]) -> str:
    header = ["cell", "status", *(c[0] for c in COLUMNS), "note"]
    rows = []
    for o in outcomes:
        status = o.status.value + (" (synthetic)" if o.synthetic else "")
        cols = [fmt(o.metrics.get(key)) for _, key, fmt in COLUMNS]
        note = o.reason.replace("|", "/").replace("\n", " ")[:120]
        rows.append([o.cell_id, status, *cols, note])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

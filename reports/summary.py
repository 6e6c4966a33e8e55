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


def _parts(cell_id: str) -> list[str]:
    axes, *extra = cell_id.split(" ")
    return [*axes.split("/"), *extra]


def short_ids(cell_ids: Sequence[str]) -> tuple[list[str], str]:
    """Drop what every cell shares: (one short id per cell, the shared part for a caption)."""
    split = [_parts(i) for i in cell_ids]
    width = max((len(p) for p in split), default=0)
    padded = [p + [""] * (width - len(p)) for p in split]
    varying = [k for k in range(width) if len({p[k] for p in padded}) > 1]
    if not varying or len(cell_ids) < 2:
        return list(cell_ids), ""
    shared = "/".join("*" if k in varying else padded[0][k] for k in range(min(6, width)))
    return [" ".join(p[k] for k in varying if p[k]) for p in padded], shared


def summary_table(outcomes: Sequence[Outcome]) -> str:
    names, shared = short_ids([o.cell_id for o in outcomes])
    header = [f"cell ({shared})" if shared else "cell", "status", *(c[0] for c in COLUMNS), "note"]
    rows = []
    for name, o in zip(names, outcomes, strict=True):
        status = o.status.value + (" (synthetic)" if o.synthetic else "")
        cols = [fmt(o.metrics.get(key)) for _, key, fmt in COLUMNS]
        note = o.reason.replace("|", "/").replace("\n", " ")[:120]
        rows.append([name, status, *cols, note])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

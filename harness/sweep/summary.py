"""The sweep's closing table, as Markdown (readable in a terminal and on the parent run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.metrics import names
from harness.results.result import Outcome


def _num(fmt: str, scale: float = 1.0) -> Callable[[float | None], str]:
    return lambda v: "-" if v is None else format(v * scale, fmt)


TOK_S = names.OUTPUT_THROUGHPUT.name
COLUMNS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("tok/s", TOK_S, _num(".1f")),
    ("± 95% CI", f"{TOK_S}_ci95_half", _num(".1f")),
    ("CV %", f"{TOK_S}_cv", _num(".1f", 100)),
    ("TTFT p50 ms", "ttft_p50_s", _num(".1f", 1e3)),
    ("ITL p50 ms", "itl_p50_s", _num(".2f", 1e3)),
    ("ITL p99 ms", "itl_p99_s", _num(".2f", 1e3)),
    ("e2e p50 s", "e2e_p50_s", _num(".3f")),
    # the worker and what it launched (a server): the memory the cell needed on the host
    ("peak RSS MiB", names.PEAK_TREE_RSS.name, _num(".0f", 1 / 2**20)),
    ("bpw", names.MODEL_BPW.name, _num(".2f")),
    ("file MiB", names.MODEL_FILE.name, _num(".1f", 1 / 2**20)),
    # decode bytes/s ÷ the hardware's peak read bandwidth (harness/metrics/roofline.py)
    ("roofline %", "roofline.efficiency", _num(".0f", 100)),
    ("$/1M out", "cost_per_1m_output_tokens_usd", _num(".3f")),
)


def _with_derived(metrics: dict[str, float]) -> dict[str, float]:
    out = dict(metrics)
    hi, mean = metrics.get(f"{TOK_S}_ci95_hi"), metrics.get(TOK_S)
    if hi is not None and mean is not None:
        out[f"{TOK_S}_ci95_half"] = hi - mean
    return out


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


# Shown when any cell ran the quality eval.
QUALITY_COLUMNS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("KLD", "fidelity.kld_mean", _num(".4f")),
    ("top-1 %", "fidelity.top1_agreement", _num(".1f", 100)),
    ("PPL", "quality.corpus_ppl", _num(".2f")),
)


# Shown when any cell ran on a GPU: device-wide and per-process VRAM (NVML), torch's own
# allocator peak, energy per token, the lowest SM clock and the memory prediction held to them.
GPU_COLUMNS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("VRAM dev MiB", "gpu_peak_used_bytes", _num(".0f", 1 / 2**20)),
    ("VRAM proc MiB", "gpu_peak_proc_bytes", _num(".0f", 1 / 2**20)),
    ("torch peak MiB", "engine_torch_cuda_max_allocated_peak_bytes", _num(".0f", 1 / 2**20)),
    ("J/tok", "gpu_energy_per_output_token_j", _num(".4f")),
    ("SM MHz min", "sm_clock_min_mhz", _num(".0f")),
    ("mem measured/predicted", "memory.prediction_ratio", _num(".2f")),
)


def summary_table(outcomes: Sequence[Outcome]) -> str:
    names, shared = short_ids([o.cell_id for o in outcomes])
    quality = any(o.verdict for o in outcomes)
    gpu = any("gpu_peak_used_bytes" in o.metrics for o in outcomes)
    columns = COLUMNS + (GPU_COLUMNS if gpu else ()) + (QUALITY_COLUMNS if quality else ())
    header = [f"cell ({shared})" if shared else "cell", "status", *(c[0] for c in columns)]
    header += ["quality", "note"] if quality else ["note"]
    rows = []
    for name, o in zip(names, outcomes, strict=True):
        status = o.status.value + (" (synthetic)" if o.synthetic else "")
        metrics = _with_derived(o.metrics)
        cols = [fmt(metrics.get(key)) for _, key, fmt in columns]
        if quality:
            cols.append(o.verdict or "-")
        note = "; ".join([o.reason, *o.flags] if o.reason else o.flags)
        note = note.replace("|", "/").replace("\n", " ")[:160]
        rows.append([name, status, *cols, note])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

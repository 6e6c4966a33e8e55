"""How each table column is shown: header, unit scaling and its CI, shared by Markdown and HTML
so both say the same number (the CSV keeps the unrounded values)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

MIB = 2**20


@dataclass(frozen=True)
class Column:
    header: str
    key: str  # the table column
    fmt: str  # format spec after scaling
    scale: float = 1.0
    ci: tuple[str, str] | None = None  # columns holding the CI bounds

    def value(self, row: pd.Series) -> str:
        return number(row.get(self.key), self.fmt, self.scale)

    def interval(self, row: pd.Series) -> str:
        if self.ci is None:
            return ""
        lo, hi = (number(row.get(c), self.fmt, self.scale) for c in self.ci)
        return "" if "—" in (lo, hi) else f"{lo}–{hi}"


def number(x: object, fmt: str, scale: float = 1.0) -> str:
    if x is None or not isinstance(x, int | float) or math.isnan(x):
        return "—"
    return format(float(x) * scale, fmt)


def points(x: object) -> str:
    """A quality change (fraction) in signed points."""
    out = number(x, "+.1f", 100)
    return out.replace("-", "−")


PERFORMANCE = (
    Column("tok/s", "tok_s", ".1f", ci=("tok_s_lo", "tok_s_hi")),
    Column("TTFT p95 ms", "ttft_p95_s", ".1f", 1e3, ("ttft_p95_lo", "ttft_p95_hi")),
    Column("ITL p95 ms", "itl_p95_s", ".2f", 1e3, ("itl_p95_lo", "itl_p95_hi")),
    Column("e2e p95 ms", "e2e_p95_s", ".0f", 1e3, ("e2e_p95_lo", "e2e_p95_hi")),
    Column("TTFT p50 ms", "ttft_p50_s", ".1f", 1e3),
    Column("e2e p50 ms", "e2e_p50_s", ".0f", 1e3),
    # decode bytes/s as a share of the hardware's peak read bandwidth (docs/metrics.md)
    Column("roofline %", "roofline", ".0f", 100),
)
MEMORY = (
    Column("peak tree RSS MiB", "peak_tree_rss_bytes", ".1f", 1 / MIB),
    Column("peak VRAM MiB", "gpu_peak_bytes", ".1f", 1 / MIB),
    Column("predicted MiB", "predicted_peak_bytes", ".1f", 1 / MIB),
    Column("measured/predicted", "prediction_ratio", ".3f"),
    Column("bpw", "bpw", ".2f"),
    Column("file MiB", "weights_bytes", ".1f", 1 / MIB),
)
ENERGY_COST = (
    Column("GPU J/tok", "gpu_j_per_tok", ".4f"),
    Column("CPU J/tok", "cpu_j_per_tok", ".4f"),
    Column("cost/1M out", "cost_1m", "#.4g", ci=("cost_1m_lo", "cost_1m_hi")),
)
FIDELITY = (
    Column("KLD", "kld", ".4f"),
    Column("top-1 %", "top1", ".1f", 100),
    Column("PPL ratio", "ppl_ratio", ".3f"),
)
ALL = PERFORMANCE + MEMORY + ENERGY_COST + FIDELITY


def present(columns: tuple[Column, ...], frame: pd.DataFrame) -> tuple[Column, ...]:
    """Only the columns some cell has (a CPU sweep has no VRAM column)."""
    return tuple(c for c in columns if c.key in frame and frame[c.key].notna().any())


Formatter = Callable[[pd.Series], str]

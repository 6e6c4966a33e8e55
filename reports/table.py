"""One row per cell: the numbers a decision needs, read from the cell's MLflow run.

Every value is the run's logged metric under its docs/metrics.md or docs/quality.md name,
renamed for the table; nothing is recomputed here except (a) p95 confidence intervals, from
the raw events (reports/latency.py), and (b) costs under a `decision.price` override, from the
logged throughput and its CI through the same formula as harness/metrics/cost.py. A value the
run does not have is NaN, and `absent` keeps the run's reason for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.config.decision import DecisionConfig, MemoryOf
from harness.metrics import names
from harness.metrics.cost import per_million
from harness.tracking.store import RunData
from reports.latency import SeriesStats

AXES = ("model", "method", "precision", "runtime", "hardware", "workload")
SLICES = ("arithmetic", "json", "instructions", "long_context", "multiple_choice")
LATENCY = ("ttft", "itl", "e2e")
# table column <- logged metric
METRICS = {
    "tok_s": "output_throughput_tok_s",
    "tok_s_lo": "output_throughput_tok_s_ci95_lo",
    "tok_s_hi": "output_throughput_tok_s_ci95_hi",
    "tok_s_cv": "output_throughput_tok_s_cv",
    **{f"{s}_p50_s": f"{s}_p50_s" for s in LATENCY},
    **{f"{s}_p95_s": f"{s}_p95_s" for s in LATENCY},
    "ttft_max_s": "ttft_max_s",
    "itl_max_s": "itl_max_s",
    "e2e_max_s": "e2e_max_s",
    "peak_tree_rss_bytes": "peak_tree_rss_bytes",
    "gpu_peak_bytes": "gpu_peak_proc_bytes",
    "measured_peak_bytes": "memory.measured_peak_bytes",
    "predicted_peak_bytes": "memory.predicted_peak_bytes",
    "prediction_ratio": "memory.prediction_ratio",
    "bpw": "model_bpw",
    "roofline": "roofline.efficiency",
    "weights_bytes": "model_file_bytes",
    "gpu_j_per_tok": "gpu_energy_per_output_token_j",
    "cpu_j_per_tok": "cpu_energy_per_output_token_j",
    "kld": "fidelity.kld_mean",
    "top1": "fidelity.top1_agreement",
    "ppl_ratio": "fidelity.ppl_ratio",
}
# column -> the series whose pooled sample decides whether it exists (for absent reasons)
TAGS = {"status": names.STATUS, "validity": names.VALIDITY, "reason": names.REASON}
TAGS |= {"flags": names.FLAGS, "unstable": names.UNSTABLE, "role": "quality.role"}
TAGS |= {"verdict": "quality.verdict", "fit": "memory.fit", "synthetic": names.SYNTHETIC}


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # index: short cell name
    absent: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> column -> why
    slices: tuple[str, ...] = ()  # quality slices any cell has
    currency: str = "USD"
    price_note: str = ""  # which price the costs use


def short_names(runs: Sequence[RunData]) -> list[str]:
    """Each cell by the axis values that vary across the sweep (all of them if none do)."""
    choices = [[r.tags.get(f"harness.choice.{a}", "") for a in AXES] for r in runs]
    varying = [i for i in range(len(AXES)) if len({c[i] for c in choices}) > 1]
    labels = [" ".join(c[i] for i in varying) or r.name for c, r in zip(choices, runs, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for n in labels:  # same axes (e.g. a runtime option swept): number them
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} #{seen[n]}")
    return out


def _cost_columns(run: RunData, price: float | None) -> dict[str, float]:
    cost = [k for k in run.metrics if k.startswith("cost_per_1m_output_tokens_")]
    columns = ("cost_1m", "cost_1m_lo", "cost_1m_hi")
    if price is None:
        base = next((k for k in cost if not k.endswith(("_ci95_lo", "_ci95_hi"))), None)
        if base is None:
            return dict.fromkeys(columns, math.nan)
        m = run.metrics
        bounds = (m.get(f"{base}_ci95_{s}", math.nan) for s in ("lo", "hi"))
        return dict(zip(columns, (m[base], *bounds), strict=True))
    tp = run.metrics.get("output_throughput_tok_s")
    lo, hi = (run.metrics.get(f"output_throughput_tok_s_ci95_{s}") for s in ("lo", "hi"))
    return {
        "cost_1m": per_million(price, tp) if tp else math.nan,
        "cost_1m_lo": per_million(price, hi) if hi else math.nan,
        "cost_1m_hi": per_million(price, lo) if lo and lo > 0 else math.nan,
    }


def _slices(run: RunData, slices: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    worst, worst_slice = math.nan, ""
    for s in slices:
        m = run.metrics
        delta = m.get(f"quality.{s}.delta", math.nan)
        out[f"delta:{s}"] = delta
        out[f"delta_lo:{s}"] = m.get(f"quality.{s}.delta_ci_low", math.nan)
        out[f"delta_hi:{s}"] = m.get(f"quality.{s}.delta_ci_high", math.nan)
        out[f"verdict:{s}"] = run.tags.get(f"quality.verdict.{s}", "")
        if not math.isnan(delta) and (math.isnan(worst) or delta < worst):
            worst, worst_slice = delta, s
    out["worst_delta"], out["worst_slice"] = worst, worst_slice
    return out


def _row(run: RunData, slices: Sequence[str], price: float | None) -> dict[str, object]:
    row: dict[str, object] = {"cell_id": run.tags.get(names.CELL_ID, run.name)}
    row["run_id"] = run.run_id
    row |= {a: run.tags.get(f"harness.choice.{a}", "") for a in AXES}
    row |= {col: run.tags.get(tag, "") for col, tag in TAGS.items()}
    row |= {col: run.metrics.get(metric, math.nan) for col, metric in METRICS.items()}
    row |= _cost_columns(run, price)
    row |= _slices(run, slices)
    if row["role"] == "baseline":  # the reference itself: no loss by definition
        row["worst_delta"] = 0.0
        row["kld"] = 0.0 if run.metrics.get("fidelity.n_tokens") else row["kld"]
    return row


def _absent(run: RunData) -> dict[str, str]:
    reasons = {k.removeprefix("absent."): v for k, v in run.tags.items() if k.startswith("absent.")}
    out = {col: reasons[metric] for col, metric in METRICS.items() if metric in reasons}
    for source in ("gpu", "cpu"):  # per-token energy is absent because the energy is
        if f"{source}_energy_j" in reasons:
            out[f"{source}_j_per_tok"] = reasons[f"{source}_energy_j"]
    cost = next((v for k, v in reasons.items() if k.startswith("cost_per_1m_output")), None)
    if cost:
        out["cost_1m"] = cost
    return out


def build(
    runs: Sequence[RunData],
    latency: Mapping[str, Mapping[str, SeriesStats]],
    decision: DecisionConfig,
) -> Table:
    """The sweep's table; ``latency`` maps run id -> series -> stats from its events."""
    real = [r for r in runs if r.tags.get(names.SYNTHETIC) != "true"]
    slices = tuple(s for s in SLICES if any(f"quality.{s}.delta" in r.metrics for r in real))
    price = decision.price.per_hour
    rows, absent = [], {}
    labels = short_names(real)
    for name, run in zip(labels, real, strict=True):
        row = _row(run, slices, price)
        for series in LATENCY:
            stats = latency.get(run.run_id, {}).get(f"{series}_s")
            ci = stats.ci95 if stats else None
            row[f"{series}_p95_lo"], row[f"{series}_p95_hi"] = ci or (math.nan, math.nan)
        by_weights = decision.memory_of is MemoryOf.weights
        row["memory_bytes"] = row["weights_bytes" if by_weights else "measured_peak_bytes"]
        rows.append(row)
        absent[name] = _absent(run)
    if not rows:  # nothing real to show: the columns still exist, so every reader works
        empty = RunData("", "", "", {}, {}, {})
        template = _row(empty, slices, price) | {"memory_bytes": math.nan}
        template |= {f"{s}_p95_{b}": math.nan for s in LATENCY for b in ("lo", "hi")}
        frame = pd.DataFrame(columns=list(template), index=pd.Index([], name="cell"))
    else:
        frame = pd.DataFrame(rows, index=pd.Index(labels, name="cell"))
    currency = decision.price.currency if price is not None else _currency(real)
    frame.attrs["currency"] = currency
    return Table(frame, absent, slices, currency, _price_note(real, decision))


def _currency(runs: Sequence[RunData]) -> str:
    found = sorted({r.tags["price.currency"] for r in runs if r.tags.get("price.currency")})
    return "/".join(found) or "USD"


def _price_note(runs: Sequence[RunData], decision: DecisionConfig) -> str:
    p = decision.price
    if p.per_hour is not None:
        return (
            f"every cell priced at {p.per_hour:g} {p.currency}/hour (decision.price, snapshot "
            f"{p.snapshot or 'undated'}, source: {p.source or 'not given'})"
        )
    snaps = sorted(
        {
            f"{r.tags.get('harness.choice.hardware', '?')}: {r.tags['price.per_hour']} "
            f"{r.tags.get('price.currency', '')}/hour, snapshot {r.tags.get('price.snapshot')}, "
            f"source: {r.tags.get('price.source')}"
            for r in runs
            if r.tags.get("price.per_hour") not in (None, "None")
        }
    )
    return "; ".join(snaps) if snaps else "no price recorded (cost.enabled=false)"

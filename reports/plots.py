"""Static PNG plots for the HTML report, embedded as data URIs so the page needs no JavaScript.

Figures are built on `Figure` + `FigureCanvasAgg` directly, never through pyplot: pyplot keeps
global state (current figure, backend) that is neither thread-safe nor headless-safe.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from harness.metrics.stats import min_samples_for
from reports.pareto import pareto_front, staircase

Floats = np.ndarray[Any, np.dtype[np.float64]]
DPI = 110
LABEL_ALL = 15
SIZE = (7.0, 4.5)
MIB = float(2**20)
FRONT = "#d95f02"
POINT = "#4a6fa5"
BASE_STYLE: dict[str, Any] = {"marker": "s", "color": "black", "label": "baseline"}
ERRORBAR_STYLE: dict[str, Any] = dict(fmt="o", ms=5, color=POINT, ecolor="0.55", capsize=2)
NO_PRICE = "no price: no cell has a cost per 1M output tokens (the hardware sets no price_per_hour)"
NO_LATENCY = "no latency samples: no cell recorded per-request timings"
NO_QUALITY = "no cell has a quality measurement (run with eval=smoke or eval=full)"


@dataclass(frozen=True)
class Plot:
    key: str
    title: str
    png: bytes | None  # None when there was not enough data; `caption` then says why
    caption: str
    front: tuple[str, ...] = ()  # cells on the Pareto front, in row order (trade-off plots only)


def to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


LABEL_WIDTH = 40  # characters per line of a cell name on an axis


def _esc(text: object) -> str:
    """A label as matplotlib should draw it: "$" escaped (it would switch to mathtext) and a
    long cell name wrapped after a "/" or a space, so that constrained layout has room for
    the axes (a single run's full cell name is over 100 characters)."""
    lines, line = [], ""
    for part in re.split(r"(?<=[/ ])", str(text).replace("$", r"\$")):
        if line and len(line) + len(part) > LABEL_WIDTH:
            lines.append(line.rstrip())
            line = ""
        line += part
    return "\n".join([*lines, line.rstrip()])


def _col(df: pd.DataFrame, name: str) -> Floats:
    """A float column; a column the report never filled reads all-NaN (absent, never 0)."""
    if name not in df.columns:
        return np.full(len(df), np.nan)
    # to_numpy with na_value: a nullable column's pd.NA would not convert to float otherwise
    col = pd.to_numeric(df[name], errors="coerce")
    return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _is_baseline(df: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    if "role" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return np.asarray(df["role"].astype(str) == "baseline", dtype=bool)


def _figure(size: tuple[float, float] = SIZE, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]


def _png(fig: Figure) -> bytes:
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=DPI)
    raw.seek(0)
    rgb = Image.open(raw).convert("RGB")
    # A plot has few colours: a 256-colour palette looks the same and is ~3x smaller than RGBA,
    # which keeps a 20-cell heatmap under the report's size budget. Pillow writes no timestamp
    # or "Software" chunk, so the same data gives byte-identical images.
    pal = rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _kept(values: Iterable[Any], keep: Iterable[Any]) -> list[Any]:
    return [v for v, k in zip(values, keep, strict=True) if k]


def _trade_off(
    ax: Axes, xs: Any, ys: Any, names: list[str], keep: Any, maximize_y: bool
) -> tuple[str, ...]:
    """Label the kept points and draw the front (min x) over them; returns the front's cells."""
    on = pareto_front(list(xs), list(ys), minimize_x=True, maximize_y=maximize_y)
    kx, ky, kon = list(xs[keep]), list(ys[keep]), _kept(on, keep)
    sx, sy = staircase(kx, ky, minimize_x=True, maximize_y=maximize_y)
    ax.plot(sx, sy, color=FRONT, lw=1.5, zorder=2, label="Pareto front")
    ax.scatter(_kept(kx, kon), _kept(ky, kon), s=90, facecolors="none", edgecolors=FRONT, lw=2)
    # Past LABEL_ALL points the names overlap into an unreadable blot: name the front only.
    shown = [k or len(kx) <= LABEL_ALL for k in kon]
    for x, y, n in zip(
        _kept(kx, shown), _kept(ky, shown), _kept(_kept(names, keep), shown), strict=True
    ):
        ax.annotate(_esc(n), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    return tuple(_kept(names, on))


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(_esc(xlabel))
    ax.set_ylabel(_esc(ylabel))
    ax.set_title(_esc(title), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _missing_note(names: Sequence[str], keep: np.ndarray[Any, Any], what: str) -> str:
    left = [n for n, k in zip(names, keep, strict=True) if not k]
    more = f" and {len(left) - 8} more" if len(left) > 8 else ""  # a caption, not a table
    return f" Not plotted ({what}): {', '.join(left[:8])}{more}." if left else ""


def _label_note(keep: np.ndarray[Any, Any]) -> str:
    n = int(keep.sum())
    return f" With {n} cells, only those on the front are named." if n > LABEL_ALL else ""


def _quality(df: pd.DataFrame) -> tuple[Floats, bool, str] | None:
    """(y values, higher is better?, axis label), or None when no cell measured quality."""
    delta = _col(df, "worst_delta")
    if np.isfinite(delta).any():
        # The baseline is the reference: its change against itself is 0 points by definition.
        pts = np.where(_is_baseline(df) & np.isnan(delta), 0.0, delta * 100.0)
        return pts, True, "worst per-slice change vs baseline (points)"
    kld = _col(df, "kld")
    if np.isfinite(kld).any():
        return kld, False, "KLD vs baseline (nats, lower is better)"
    return None


def _kld_scale(ax: Axes, kld: Any) -> None:
    positive = kld[kld > 0]
    if positive.size and kld.min() >= 0 and kld.max() > 100 * positive.min():
        # KLDs spanning decades: symlog keeps the baseline's 0 on the axis, where log would drop it.
        ax.set_yscale("symlog", linthresh=float(positive.min()))


def quality_vs_memory(
    df: pd.DataFrame, memory_col: str, memory_label: str, budget_bytes: float | None = None
) -> Plot:
    key, title = "quality_vs_memory", f"Quality vs {memory_label}"
    quality = _quality(df)
    if quality is None:
        return Plot(key, title, None, NO_QUALITY)
    ys, higher_better, ylabel = quality
    xs = _col(df, memory_col) / MIB
    keep = np.isfinite(xs) & np.isfinite(ys)
    if not keep.any():
        return Plot(key, title, None, f"no cell has both {memory_label} and a quality measurement")
    names = [str(i) for i in df.index]
    fig, (ax,) = _figure()
    base = _is_baseline(df)
    for is_base, style in ((False, {"marker": "o", "color": POINT}), (True, BASE_STYLE)):
        sel = keep & (base == is_base)
        if sel.any():
            ax.scatter(xs[sel], ys[sel], s=30, zorder=3, **style)
    front = _trade_off(ax, xs, ys, names, keep, higher_better)
    if not higher_better:
        _kld_scale(ax, ys[keep])
    budget = ""
    if budget_bytes is not None and math.isfinite(budget_bytes):
        ax.axvline(budget_bytes / MIB, color="0.3", ls="--", lw=1, label="memory budget")
        budget = f" The dashed line is the memory budget ({budget_bytes / MIB:,.0f} MiB)."
    _finish(ax, title, f"{memory_label} (MiB)", ylabel)
    better = "up" if higher_better else "down"
    caption = (
        f"Each point is a cell: x = {memory_label} in MiB, y = {ylabel}. The orange line and ringed"
        f" points are the Pareto front: no other cell uses less memory and is also better (further"
        f" {better}) on quality.{budget}"
        + _label_note(keep)
        + _missing_note(names, keep, "no memory or no quality")
    )
    return Plot(key, title, _png(fig), caption, front)


def _err(v: Floats, lo: Floats, hi: Floats) -> Floats:
    """Asymmetric error-bar lengths; an unknown bound draws no bar on that side."""
    below, above = np.nan_to_num(v - lo, nan=0.0), np.nan_to_num(hi - v, nan=0.0)
    # A bound on the wrong side of the value (rounding) would be a negative length, which matplotlib
    # rejects; clip it to no bar.
    return np.vstack([np.clip(below, 0.0, None), np.clip(above, 0.0, None)])


def throughput_vs_cost(df: pd.DataFrame) -> Plot:
    key, title = "throughput_vs_cost", "Throughput vs cost"
    currency = str(df.attrs.get("currency", "USD"))
    cost, tok = _col(df, "cost_1m"), _col(df, "tok_s")
    if np.isnan(cost).all():  # an infinite cost (no tokens) had a price: not this message
        return Plot(key, title, None, NO_PRICE)
    keep = np.isfinite(cost) & np.isfinite(tok)
    if not keep.any():
        return Plot(key, title, None, "no cell has both a cost and a measured throughput")
    names, k = [str(i) for i in df.index], keep
    fig, (ax,) = _figure()
    ax.errorbar(
        cost[k],
        tok[k],
        xerr=_err(cost[k], _col(df, "cost_1m_lo")[k], _col(df, "cost_1m_hi")[k]),
        yerr=_err(tok[k], _col(df, "tok_s_lo")[k], _col(df, "tok_s_hi")[k]),
        **ERRORBAR_STYLE,
    )
    front = _trade_off(ax, cost, tok, names, keep, True)
    _finish(ax, title, f"cost per 1M output tokens ({currency})", "output throughput (tok/s)")
    caption = (
        f"Each point is a cell: x = cost per 1M output tokens ({currency}), y = output tokens per"
        " second; error bars are 95 % confidence intervals. The orange line and ringed points are"
        " the Pareto front: no other cell is both cheaper and faster."
        + _label_note(keep)
        + _missing_note(names, keep, "no cost or no throughput")
    )
    return Plot(key, title, _png(fig), caption, front)


GREY, WHITE = to_rgba("#dcdcdc"), to_rgba("white")
HEAT_FULL = 10.0  # points of change at which the red/green reaches full strength


def _fmt_pts(v: float) -> str:
    return f"{v:+.1f}".replace("-", "−") if v != 0 else "0.0"


def _heat_cell(d: float, lo: float, hi: float, verdict: object) -> tuple[Any, str, bool]:
    """(colour, annotation, dark background?) for one slice of one cell; values in points."""
    if math.isnan(d):
        return WHITE, "–", False
    letter = verdict[:1].upper() if isinstance(verdict, str) else ""
    ci = f"[{_fmt_pts(lo)}, {_fmt_pts(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else "no CI"
    text = f"{_fmt_pts(d)}\n{ci} {letter}".rstrip()
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi:
        return GREY, text, False
    strength = 0.3 + 0.6 * min(abs(d) / HEAT_FULL, 1.0)
    return colormaps["Reds" if hi < 0 else "Greens"](strength), text, strength > 0.6


def slice_heatmap(df: pd.DataFrame, slices: Sequence[str]) -> Plot:
    key, title = "slice_heatmap", "Per-slice quality change vs baseline"
    rows = df[~_is_baseline(df)]
    deltas = {s: _col(rows, f"delta:{s}") * 100.0 for s in slices}
    if not slices or not any(np.isfinite(v).any() for v in deltas.values()):
        return Plot(key, title, None, NO_QUALITY.replace("a quality", "a per-slice quality"))
    names = [str(i) for i in rows.index]
    lo = {s: _col(rows, f"delta_lo:{s}") * 100.0 for s in slices}
    hi = {s: _col(rows, f"delta_hi:{s}") * 100.0 for s in slices}
    verdicts = {
        s: list(rows[f"verdict:{s}"]) if f"verdict:{s}" in rows.columns else [""] * len(rows)
        for s in slices
    }
    rgba = np.zeros((len(names), len(slices), 4))
    size = (max(SIZE[0], 1.4 * len(slices) + 2.0), max(2.5, 0.45 * len(names) + 1.8))
    fig, (ax,) = _figure(size)
    for j, s in enumerate(slices):
        for i in range(len(names)):
            colour, text, dark = _heat_cell(deltas[s][i], lo[s][i], hi[s][i], verdicts[s][i])
            rgba[i, j] = colour
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(slices)), [_esc(s) for s in slices], fontsize=8)
    ax.set_yticks(range(len(names)), [_esc(n) for n in names], fontsize=8)
    ax.tick_params(length=0)
    ax.set_title(title + " (points)", fontsize=11)
    legend = [
        Patch(color=to_rgba("#c4352b"), label="significant loss (CI below 0)"),
        Patch(color=to_rgba("#2f8f4e"), label="significant gain (CI above 0)"),
        Patch(color=GREY, label="not significant (CI contains 0)"),
        Patch(facecolor=WHITE, edgecolor="0.6", label="not measured (–)"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    caption = (
        "Rows are cells, columns are quality slices; each square shows the paired change against"
        " the baseline in points, its 95 % CI and the verdict's initial (P/F/I). Red: the CI lies"
        " entirely below 0 (a significant loss, darker = larger); green: entirely above 0; grey:"
        " the CI contains 0; white with –: not measured. The baseline row is omitted (it is the"
        " reference)."
    )
    return Plot(key, title, _png(fig), caption)


BOX_STYLE: dict[str, Any] = dict(flierprops=dict(ms=2, alpha=0.4), medianprops=dict(color="k"))
PANELS = (
    ("ttft_s", "time to first token"),
    ("itl_s", "inter-token latency"),
    ("e2e_s", "end-to-end"),
)


def _latency_panel(
    ax: Axes, samples: Mapping[str, Mapping[str, Sequence[float]]], metric: str
) -> bool:
    """One box per cell with samples, p95 as a marker; False when no cell measured `metric`."""
    data: list[Floats] = []
    names: list[str] = []
    for cell, by_metric in samples.items():
        ms = np.asarray(by_metric.get(metric, ()), dtype=np.float64) * 1e3
        ms = ms[np.isfinite(ms)]
        if ms.size:
            data.append(ms)
            names.append(_esc(cell))
    if not data:
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    ax.boxplot(data, tick_labels=names, widths=0.6, **BOX_STYLE)
    # the harness reports a p95 only when the sample's maximum bounds it (docs/metrics.md)
    enough = [i for i, d in enumerate(data) if d.size >= min_samples_for(95)]
    p95 = [float(np.percentile(data[i], 95)) for i in enough]
    if enough:
        at = [i + 1 for i in enough]
        ax.scatter(at, p95, marker="v", color=FRONT, s=25, zorder=3, label="p95")
    pooled = np.concatenate(data)
    if pooled.min() > 0 and pooled.max() > 20 * float(np.median(pooled)):
        ax.set_yscale("log")  # stalls would squash every box into a line on a linear axis
    if len(data) > 3:  # anchored at their right end, slanted names stay under their own box
        ax.set_xticks(ax.get_xticks(), names, rotation=40, ha="right", rotation_mode="anchor")
    ax.tick_params(axis="x", labelsize=8)
    return True


def latency_distributions(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> Plot:
    key, title = "latency", "Latency distributions"
    fig, axes = _figure(ncols=len(PANELS))
    drawn = [
        _latency_panel(ax, samples, metric) for ax, (metric, _) in zip(axes, PANELS, strict=True)
    ]
    if not any(drawn):
        return Plot(key, title, None, NO_LATENCY)
    for ax, (_, label), ok in zip(axes, PANELS, drawn, strict=True):
        ax.set_title(label, fontsize=10)
        if ok:
            ax.set_ylabel("ms", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    # One legend for the figure: inside a panel it would cover the top of some cell's box.
    handles = next((h for h in (ax.get_legend_handles_labels() for ax in axes) if h[0]), None)
    if handles is not None:
        fig.legend(*handles, loc="outside upper right", fontsize=8)
    caption = (
        "Raw samples per cell in milliseconds: time to first token and end-to-end latency per"
        " request, inter-token latency per token. Boxes span the quartiles with the median as a"
        " line, whiskers reach 1.5 × IQR, dots beyond are outliers (a panel whose largest sample"
        " exceeds 20 × its median is on a log axis); the orange triangle is the"
        " p95, drawn where a cell has the 59 samples a p95 needs (docs/metrics.md)."
    )
    return Plot(key, title, _png(fig), caption)


def memory_prediction(df: pd.DataFrame) -> Plot:
    key, title = "memory_prediction", "Predicted vs measured peak memory"
    pred, meas = _col(df, "predicted_peak_bytes") / MIB, _col(df, "measured_peak_bytes") / MIB
    keep = np.isfinite(pred) & np.isfinite(meas)
    if not keep.any():
        n_pred, n_meas = int(np.isfinite(pred).sum()), int(np.isfinite(meas).sum())
        why = f"no cell has both a predicted and a measured peak memory ({n_pred} predicted,"
        why += f" {n_meas} measured)"
        return Plot(key, title, None, why)
    names = _kept([str(i) for i in df.index], keep)
    ratio = _col(df, "prediction_ratio")[keep]
    ratio = np.where(np.isfinite(ratio), ratio, meas[keep] / pred[keep])
    # Horizontal bars: cell names stay level and readable however many cells there are.
    fig, (ax,) = _figure((SIZE[0], max(SIZE[1], 0.3 * len(names) + 1.2)))
    y = np.arange(len(names))
    ax.barh(y - 0.2, pred[keep], 0.4, label="predicted", color="#b3c6e0")
    ax.barh(y + 0.2, meas[keep], 0.4, label="measured", color=POINT)
    for yi, end, r in zip(y, np.maximum(pred[keep], meas[keep]), ratio, strict=True):
        ax.annotate(f"×{r:.2f}", (end, yi), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_yticks(y, [_esc(n) for n in names], fontsize=8)
    ax.invert_yaxis()  # first cell on top, as in the report's table
    ax.margins(x=0.12)
    _finish(ax, title, "peak memory (MiB)", "")
    caption = (
        "Per cell, the planner's predicted peak memory next to the measured peak (RSS on CPU, VRAM"
        " on GPU), in MiB; the label beside each pair is measured ÷ predicted (above ×1 means the"
        " planner under-estimated)."
        + _missing_note([str(i) for i in df.index], keep, "no prediction or no measurement")
    )
    return Plot(key, title, _png(fig), caption)

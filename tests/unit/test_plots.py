from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from reports import plots
from reports.pareto import pareto_front

NAN = math.nan
MIB = 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cells() -> pd.DataFrame:
    """Five cells with the gaps a real sweep has: an unmeasured cell, no CIs, missing slices."""
    return pd.DataFrame(
        {
            "tok_s": [20.0, 35.0, 50.0, 48.0, NAN],
            "tok_s_lo": [18.0, 30.0, 45.0, NAN, NAN],
            "tok_s_hi": [22.0, 40.0, 55.0, NAN, NAN],
            "cost_1m": [27.8, 15.9, 11.1, 11.6, NAN],
            "cost_1m_lo": [25.0, 13.9, 10.1, NAN, NAN],
            "cost_1m_hi": [30.9, 18.5, 12.3, NAN, NAN],
            "weights_bytes": [2000 * MIB, 1000 * MIB, 600 * MIB, 700 * MIB, 500 * MIB],
            "measured_peak_bytes": [2500 * MIB, 1400 * MIB, 900 * MIB, NAN, 800 * MIB],
            "predicted_peak_bytes": [2400 * MIB, 1300 * MIB, 1000 * MIB, 1000 * MIB, NAN],
            "prediction_ratio": [2500 / 2400, 1400 / 1300, 0.9, NAN, NAN],
            "kld": [0.0, 0.002, 0.05, 0.4, NAN],
            "worst_delta": [NAN, -0.01, -0.05, -0.03, NAN],
            "delta:arithmetic": [NAN, -0.01, -0.05, -0.12, NAN],
            "delta_lo:arithmetic": [NAN, -0.04, -0.08, -0.18, NAN],
            "delta_hi:arithmetic": [NAN, 0.02, -0.02, -0.06, NAN],
            "verdict:arithmetic": ["", "PASS", "FAIL", "FAIL", ""],
            "delta:json": [NAN, 0.03, NAN, 0.0, NAN],
            "delta_lo:json": [NAN, 0.01, NAN, -0.02, NAN],
            "delta_hi:json": [NAN, 0.05, NAN, 0.02, NAN],
            "verdict:json": [NAN, "PASS", NAN, "INCONCLUSIVE", NAN],
            "role": ["baseline", "variant", "variant", "variant", ""],
        },
        index=["f16", "q8_0", "q4_k_m", "q3_k_s", "iq2"],
    )


def samples() -> dict[str, dict[str, list[float]]]:
    rng = np.random.default_rng(0)
    out = {
        n: {
            "ttft_s": list(rng.gamma(4, 0.02, 60)),
            "itl_s": list(rng.gamma(4, 0.005, 400)),
            "e2e_s": list(rng.gamma(9, 0.2, 40)),
        }
        for n in ("f16", "q8_0")
    }
    out["q4_k_m"] = {"ttft_s": [], "itl_s": [NAN]}  # measured nothing usable
    return out


def image_size(p: plots.Plot) -> tuple[int, int]:
    """Check the bytes are a real, small PNG; return its pixel size."""
    assert p.png is not None, p.caption
    assert p.png.startswith(PNG_SIGNATURE)
    assert len(p.png) < 150_000
    with Image.open(io.BytesIO(p.png)) as im:
        im.load()
        return im.size


def test_every_plot_is_a_small_png_of_the_expected_size() -> None:
    df = cells()
    drawn = [
        plots.quality_vs_memory(df, "measured_peak_bytes", "peak memory"),
        plots.throughput_vs_cost(df),
        plots.latency_distributions(samples()),
        plots.memory_prediction(df),
    ]
    assert [p.key for p in drawn] == [
        "quality_vs_memory",
        "throughput_vs_cost",
        "latency",
        "memory_prediction",
    ]
    # 7 x 4.5 inches at 110 dpi
    assert [image_size(p) for p in drawn] == [(770, 495)] * 4


def test_the_same_input_gives_byte_identical_pngs() -> None:
    df = cells()
    first = plots.throughput_vs_cost(df).png
    assert first is not None
    assert plots.throughput_vs_cost(df).png == first
    assert b"Software" not in first  # no matplotlib version stamp to drift between installs


def test_quality_vs_memory_uses_worst_delta_in_points_with_the_baseline_at_zero() -> None:
    df = cells()
    p = plots.quality_vs_memory(df, "measured_peak_bytes", "peak memory")
    # the baseline's NaN worst_delta counts as 0 points, so f16 (most memory, best) is on the front
    ys = [0.0, -1.0, -5.0, -3.0, NAN]
    mem = list(df["measured_peak_bytes"] / MIB)
    expected = [n for n, f in zip(df.index, pareto_front(mem, ys), strict=True) if f]
    assert p.front == tuple(expected) == ("f16", "q8_0", "q4_k_m")
    assert "worst per-slice change vs baseline (points)" in p.caption
    # q3_k_s has no measured peak, iq2 no quality
    assert p.caption.endswith("Not plotted (no memory or no quality): q3_k_s, iq2.")


def test_quality_vs_memory_falls_back_to_kld_where_lower_is_better() -> None:
    df = cells().drop(columns="worst_delta")
    p = plots.quality_vs_memory(df, "weights_bytes", "weights", budget_bytes=1536 * MIB)
    # by weights: q4_k_m (600 MiB, 0.05) beats q3_k_s (700 MiB, 0.4); iq2 has no KLD
    assert p.front == ("f16", "q8_0", "q4_k_m")
    assert "KLD vs baseline (nats, lower is better)" in p.caption
    assert "memory budget (1,536 MiB)" in p.caption
    assert image_size(p) == (770, 495)


def test_quality_vs_memory_without_data_says_why() -> None:
    no_quality = cells().drop(columns=["worst_delta", "kld"])
    p = plots.quality_vs_memory(no_quality, "weights_bytes", "weights")
    assert p.png is None
    assert p.caption == "no cell has a quality measurement (run with eval=smoke or eval=full)"
    assert p.front == ()
    p = plots.quality_vs_memory(cells(), "peak_vram_bytes", "peak VRAM")
    assert p.png is None
    assert p.caption == "no cell has both peak VRAM and a quality measurement"


def test_throughput_vs_cost_front_is_cheaper_and_faster() -> None:
    p = plots.throughput_vs_cost(cells())
    # q4_k_m is the cheapest and the fastest; iq2 has neither value
    assert p.front == ("q4_k_m",)
    assert "error bars are 95 % confidence intervals" in p.caption
    assert p.caption.endswith("Not plotted (no cost or no throughput): iq2.")


def test_a_crowded_trade_off_names_only_the_front() -> None:
    n = 16
    df = pd.DataFrame(
        {"cost_1m": np.arange(1.0, n + 1), "tok_s": np.arange(1.0, n + 1)},
        index=[f"c{i}" for i in range(n)],
    )
    # cost and speed both rise with the index, so every cell is on the front
    assert plots.throughput_vs_cost(df).front == tuple(df.index)
    df["tok_s"] = 1.0  # now c0 is the cheapest at equal speed: the only one on the front
    p = plots.throughput_vs_cost(df)
    assert p.front == ("c0",)
    assert "With 16 cells, only those on the front are named." in p.caption


def test_throughput_vs_cost_without_a_price() -> None:
    df = cells()
    df["cost_1m"] = NAN
    p = plots.throughput_vs_cost(df)
    assert p.png is None
    assert p.caption.startswith("no price: no cell has a cost per 1M output tokens")


def test_heatmap_skips_the_baseline_row() -> None:
    p = plots.slice_heatmap(cells(), ["arithmetic", "json", "long_context"])
    # 4 non-baseline rows: 0.45 in each + 1.8 in of margins, 7 in wide, at 110 dpi
    assert image_size(p) == (770, 396)
    assert "(P/F/I)" in p.caption


def test_heatmap_without_slice_data_says_why() -> None:
    p = plots.slice_heatmap(cells(), ["long_context"])
    assert p.png is None
    assert p.caption == (
        "no cell has a per-slice quality measurement (run with eval=smoke or eval=full)"
    )
    assert plots.slice_heatmap(cells(), []).png is None


@pytest.mark.parametrize(
    ("d", "lo", "hi", "verdict", "text"),
    [
        (-3.0, -8.1, 2.0, "INCONCLUSIVE", "−3.0\n[−8.1, +2.0] I"),
        (2.5, 0.5, 4.5, "PASS", "+2.5\n[+0.5, +4.5] P"),
        (-5.0, -8.0, -2.0, "FAIL", "−5.0\n[−8.0, −2.0] F"),
        (1.0, NAN, NAN, NAN, "+1.0\nno CI"),
        (NAN, NAN, NAN, "", "–"),
    ],
)
def test_heat_cell_text(d: float, lo: float, hi: float, verdict: object, text: str) -> None:
    assert plots._heat_cell(d, lo, hi, verdict)[1] == text


def test_heat_cell_colour_follows_significance() -> None:
    loss = plots._heat_cell(-5.0, -8.0, -2.0, "FAIL")[0]
    big_loss = plots._heat_cell(-12.0, -18.0, -6.0, "FAIL")[0]
    gain = plots._heat_cell(3.0, 1.0, 5.0, "PASS")[0]
    assert loss[0] > loss[1] and gain[1] > gain[0]  # red and green
    assert sum(big_loss[:3]) < sum(loss[:3])  # a larger loss is darker
    # a CI touching 0 is not significant; no CI cannot be called significant either
    assert plots._heat_cell(-2.0, -4.0, 0.0, "FAIL")[0] == to_rgba("#dcdcdc")
    assert plots._heat_cell(-2.0, NAN, NAN, "")[0] == to_rgba("#dcdcdc")
    assert plots._heat_cell(NAN, NAN, NAN, "")[0] == to_rgba("white")


def test_latency_panel_marks_the_p95_in_milliseconds() -> None:
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    data = samples()
    assert plots._latency_panel(ax, data, "ttft_s")
    p95 = ax.collections[0].get_offsets()
    # one marker per cell with samples (q4_k_m has none), at position 1, 2, numpy's type-7 p95
    assert p95[:, 0].tolist() == [1.0, 2.0]
    assert p95[:, 1].tolist() == pytest.approx(
        [np.percentile(data[n]["ttft_s"], 95) * 1e3 for n in ("f16", "q8_0")]
    )
    # 58 samples are too few for a p95 (docs/metrics.md): the box, but no marker
    few = fig.add_subplot(2, 2, 3)
    assert plots._latency_panel(few, {"a": {"ttft_s": list(np.linspace(0.01, 0.02, 58))}}, "ttft_s")
    assert len(few.collections) == 0
    empty = fig.add_subplot(2, 1, 2)
    assert not plots._latency_panel(empty, {"a": {"itl_s": [1.0]}}, "ttft_s")
    assert [t.get_text() for t in empty.texts] == ["not measured"]


def test_latency_without_samples_says_why() -> None:
    for empty in ({}, {"a": {"ttft_s": [], "itl_s": [], "e2e_s": []}}):
        p = plots.latency_distributions(empty)
        assert p.png is None
        assert p.caption == "no latency samples: no cell recorded per-request timings"
    # one metric is enough to draw the figure; the other panels say "not measured"
    assert plots.latency_distributions({"a": {"itl_s": [0.01, 0.02]}}).png is not None


def test_memory_prediction_names_the_cells_left_out() -> None:
    p = plots.memory_prediction(cells())
    assert p.caption.endswith("Not plotted (no prediction or no measurement): q3_k_s, iq2.")
    df = cells()
    df["predicted_peak_bytes"] = NAN
    p = plots.memory_prediction(df)
    assert p.png is None
    assert p.caption == (
        "no cell has both a predicted and a measured peak memory (0 predicted, 4 measured)"
    )


def test_data_uri_round_trips() -> None:
    uri = plots.to_data_uri(b"\x89PNG-bytes")
    assert uri == "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    assert base64.b64decode(uri.split(",", 1)[1]) == b"\x89PNG-bytes"

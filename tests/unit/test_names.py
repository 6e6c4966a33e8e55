"""The metric and tag table (harness/metrics/names.py) agrees with docs/metrics.md, with itself
(units follow the names), and with every place that reads metrics by name."""

import re
from pathlib import Path

import pytest

from harness.metrics import names
from harness.metrics.derive import PERCENTILES, REP_METRICS
from harness.sweep.summary import COLUMNS, QUALITY_COLUMNS
from reports.diff import METRICS as DIFF_METRICS
from reports.table import METRICS as REPORT_METRICS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# sections of docs/metrics.md whose tables define recorded metrics, one per row
METRIC_SECTIONS = (
    "Per repetition",
    "Resources",
    "Cost",
    "Model file",
    "Decode roofline",
    "Memory prediction",
)
UNITS = {
    "_bytes_s": "bytes/s",
    "_tok_s": "tok/s",
    "_req_s": "req/s",
    "_s": "s",
    "_bytes": "bytes",
    "_j": "J",
    "_w": "W",
    "_mhz": "MHz",
    "_{cur}": "{cur}",
}


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {title.split(" (")[0].strip(): body for title, body in pairs}


def documented() -> set[str]:
    """Backticked names in the first column of the metric tables of docs/metrics.md."""
    found = set()
    for title, body in _sections(DOCS.read_text()).items():
        if title not in METRIC_SECTIONS:
            continue
        for line in body.splitlines():
            if line.startswith("| `"):
                first = line.split("|")[1]
                found |= set(re.findall(r"`([a-z_0-9.{}<>]+)`", first))
    return {n.replace("_usd", "_{cur}") for n in found}


def test_docs_define_exactly_the_metrics_the_table_assigns_them() -> None:
    mine = {m.name for m in names.METRICS if m.doc == "metrics.md"}
    docs = documented()
    assert docs - mine == set(), "documented in docs/metrics.md but not in the table"
    assert mine - docs == set(), "in the table but not defined in docs/metrics.md"


def test_every_latency_series_is_documented() -> None:
    text = DOCS.read_text()
    for series in names.SERIES:
        assert f"`{series.name}`" in text
    assert tuple(PERCENTILES) == names.PERCENTILES


@pytest.mark.parametrize("metric", names.METRICS, ids=lambda m: m.name)
def test_units_follow_the_names(metric: names.Metric) -> None:
    for suffix, unit in UNITS.items():
        if metric.name.endswith(suffix) and "<" not in metric.name:
            assert metric.unit == unit
            break
    assert metric.definition and len(metric.definition) < 100


def test_every_summarized_metric_of_the_estimator_is_in_the_table() -> None:
    for name in REP_METRICS:
        entry = names.resolve(name)
        assert entry is not None and entry.summarized, name


@pytest.mark.parametrize(
    "name",
    [
        "output_throughput_tok_s_ci95_lo",
        "rep.output_throughput_tok_s",
        "ttft_mean_s_cv",
        "itl_chunk_p99_s",
        "send_lag_samples",
        "cost_per_1m_output_tokens_usd_ci95_hi",
        "gpu_energy_cost_per_1m_output_tokens_eur",
        "quality.arithmetic.delta_ci95_lo",
        "fidelity.kld_mean",
        "memory.prediction_ratio",
        "engine_torch_cuda_max_allocated_peak_bytes",
        "quality.aggregate_delta",
    ],
)
def test_derived_names_resolve_to_their_entry(name: str) -> None:
    assert names.resolve(name) is not None


def test_unknown_names_do_not_resolve() -> None:
    assert names.resolve("throughput") is None
    assert names.resolve("ttft_p42_s") is None
    assert names.resolve("output_throughput_tok_s_mean") is None
    assert not names.is_tag("status")


def test_every_reader_of_metrics_uses_names_the_table_defines() -> None:
    derived = {f"{names.OUTPUT_THROUGHPUT.name}_ci95_half"}  # computed by the summary itself
    used = [key for _, key, _ in (*COLUMNS, *QUALITY_COLUMNS) if key not in derived]
    used += list(REPORT_METRICS.values())
    used += [m.name for m in DIFF_METRICS]
    assert [n for n in used if names.resolve(n) is None] == []
    assert all(m.summarized for m in DIFF_METRICS)  # compared over rep.<name>


def test_the_tag_table_names_each_tag_once() -> None:
    tags = [t.name for t in names.TAGS]
    assert len(tags) == len(set(tags))
    for tag in (names.STATUS, names.CELL_KEY, "absent.ttft_p95_s", "harness.choice.model"):
        assert names.is_tag(tag)

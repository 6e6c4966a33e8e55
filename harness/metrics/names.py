"""Every metric and tag name the harness records, once, with its unit, kind, better direction
and one-line definition (the full definitions: docs/metrics.md, quality in docs/quality.md).

Recording, the summary, the report's columns and the sweep comparison take names from here;
tests check that every recorded name resolves here and that docs/metrics.md documents exactly
the metrics this table assigns to it.

Derived names resolve to their base entry (``resolve``):

- a per-repetition metric (``summarized``) is logged as its mean under its own name, as
  ``<name>_median``, ``_std``, ``_cv``, ``_ci95_lo``, ``_ci95_hi``, and per repetition as
  ``rep.<name>``;
- a latency series (``Series``) is logged as ``<series>_p50_s`` ... ``_p99_s``, ``_max_s``
  and ``_samples``;
- ``{cur}`` in a cost name is the price's currency in lower case (``usd``);
- ``<slice>`` is an eval slice, ``<m>`` a metric name, ``<k>`` any key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    throughput = "throughput"
    latency = "latency"
    memory = "memory"
    energy = "energy"
    cost = "cost"
    quality = "quality"
    model = "model"
    tally = "count"  # (a member named `count` would shadow str.count)
    time = "time"
    ratio = "ratio"


class Better(StrEnum):
    up = "higher"  # (members named higher/lower would shadow str.lower)
    down = "lower"
    none = "none"  # neither: a setting, a count, a description


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # may hold a {cur}, <slice> or <k> placeholder
    unit: str  # "s", "tok/s", "req/s", "bytes", "J", "W", "MHz", "1" (a ratio), ...
    kind: Kind
    better: Better
    definition: str
    doc: str = "metrics.md"  # where the full definition is written
    summarized: bool = False  # per repetition: mean, median, std, CV, t-CI, rep.<name>

    @property
    def higher_is_better(self) -> bool:
        return self.better is Better.up


@dataclass(frozen=True, slots=True)
class Series:
    """A latency series pooled over every measured request: its percentiles are metrics."""

    name: str
    definition: str


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    definition: str


S, TOK_S, REQ_S, B, J, W, ONE = "s", "tok/s", "req/s", "bytes", "J", "W", "1"
T, L, M, E, C, Q = Kind.throughput, Kind.latency, Kind.memory, Kind.energy, Kind.cost, Kind.quality
UP, DOWN, NONE = Better.up, Better.down, Better.none


def _m(name: str, unit: str, kind: Kind, better: Better, definition: str, **kw: object) -> Metric:
    return Metric(name, unit, kind, better, definition, **kw)  # type: ignore[arg-type]


def _rep(name: str, unit: str, kind: Kind, better: Better, definition: str) -> Metric:
    return Metric(name, unit, kind, better, definition, summarized=True)


OUTPUT_THROUGHPUT: Final = _rep(
    "output_throughput_tok_s", TOK_S, T, UP, "Σ output tokens ÷ the repetition's window"
)
TTFT_MEAN: Final = _rep("ttft_mean_s", S, L, DOWN, "mean time to first token")
TPOT_MEAN: Final = _rep("tpot_mean_s", S, L, DOWN, "mean time per output token after the first")
E2E_MEAN: Final = _rep("e2e_mean_s", S, L, DOWN, "mean send → last token")
PEAK_TREE_RSS: Final = _m(
    "peak_tree_rss_bytes", B, M, DOWN, "peak Σ RSS of the worker and its descendants"
)
MEAN_TREE_RSS: Final = _rep(
    "mean_tree_rss_bytes", B, M, DOWN, "mean Σ RSS of the worker tree during a repetition"
)
PEAK_RSS: Final = _m(
    "peak_rss_bytes", B, M, DOWN, "the worker's ru_maxrss after the measured repetitions"
)
MODEL_FILE: Final = _m("model_file_bytes", B, Kind.model, DOWN, "size of the model file that ran")
MODEL_BPW: Final = _m("model_bpw", "bits", Kind.model, NONE, "8 × Σ tensor bytes ÷ Σ elements")
COST_OUTPUT: Final = _m(
    "cost_per_1m_output_tokens_{cur}", "{cur}", C, DOWN, "price per hour ÷ output tok/s × 10⁶/3600"
)

METRICS: Final[tuple[Metric, ...]] = (
    # per repetition (docs/metrics.md "Per repetition")
    _m("window_s", S, Kind.time, NONE, "first measured send → last measured completion"),
    _m("requests", "requests", Kind.tally, NONE, "completed measured requests (headline: total)"),
    _m("output_tokens", "tokens", Kind.tally, NONE, "Σ output tokens of the completed requests"),
    _m("repetitions", "repetitions", Kind.tally, NONE, "measured repetitions"),
    OUTPUT_THROUGHPUT,
    _rep("input_throughput_tok_s", TOK_S, T, UP, "Σ prompt tokens ÷ window"),
    _rep("total_throughput_tok_s", TOK_S, T, UP, "Σ (prompt + output tokens) ÷ window"),
    _rep("request_throughput_req_s", REQ_S, T, UP, "completed requests ÷ window"),
    _rep("goodput_req_s", REQ_S, T, UP, "requests meeting the SLO ÷ window"),
    _rep("goodput_fraction", ONE, T, UP, "requests meeting the SLO ÷ measured requests"),
    _rep("decode_tok_s", TOK_S, T, UP, "Σ (output − 1) ÷ Σ (e2e − TTFT), harness clock"),
    TTFT_MEAN,
    TPOT_MEAN,
    E2E_MEAN,
    _rep("send_lag_max_s", S, L, DOWN, "largest lag of the load generator behind its schedule"),
    _rep("engine_decode_tok_s", TOK_S, T, UP, "the runtime's own decode rate over a repetition"),
    _rep("engine_decode_s", S, Kind.time, NONE, "the runtime's own decode time (counters)"),
    _rep("engine_decode_tokens", "tokens", Kind.tally, NONE, "the runtime's own decoded tokens"),
    _rep("engine_prefill_s", S, Kind.time, NONE, "the runtime's own prompt-processing time"),
    _rep("engine_prefill_tokens", "tokens", Kind.tally, NONE, "the runtime's own prompt tokens"),
    _rep("engine_<k>", "", Kind.tally, NONE, "any other counter or gauge the runtime keeps"),
    _rep("decode_fidelity_ratio", ONE, Kind.ratio, NONE, "decode_tok_s ÷ engine_decode_tok_s"),
    _m("token_count_mismatch_fraction", ONE, Kind.ratio, DOWN, "chunk-counted ≠ reported tokens"),
    _m("max_rate_at_slo_req_s", REQ_S, T, UP, "highest open-loop rate meeting the SLO"),
    # resources
    PEAK_TREE_RSS,
    MEAN_TREE_RSS,
    PEAK_RSS,
    _m("rss_before_load_bytes", B, M, NONE, "worker RSS right before load()"),
    _m("gpu_peak_used_bytes", B, M, DOWN, "NVML device-wide memory used, peak"),
    _m("gpu_peak_used_over_baseline_bytes", B, M, DOWN, "that peak − usage before loading"),
    _m("gpu_peak_proc_bytes", B, M, DOWN, "NVML usedGpuMemory of the worker tree, peak"),
    _rep("gpu_energy_j", J, E, DOWN, "NVML total energy delta between repetition marks"),
    _rep("gpu_mean_power_w", W, E, DOWN, "gpu_energy_j ÷ the marks' window"),
    _rep("gpu_energy_per_output_token_j", J, E, DOWN, "GPU energy ÷ output tokens"),
    _rep("cpu_energy_j", J, E, DOWN, "RAPL package energy delta between repetition marks"),
    _rep("cpu_energy_per_output_token_j", J, E, DOWN, "CPU energy ÷ output tokens"),
    _m("sm_clock_min_mhz", "MHz", Kind.time, NONE, "lowest SM clock sampled"),
    _m("sm_clock_mean_mhz", "MHz", Kind.time, NONE, "mean SM clock sampled"),
    _m("sample_interval_p99_s", S, Kind.time, DOWN, "p99 gap between resource samples"),
    _m("client_peak_rss_bytes", B, M, DOWN, "peak sampled RSS of the worker process alone"),
    _m("server_peak_rss_bytes", B, M, DOWN, "peak Σ RSS of the worker's descendants (a server)"),
    _m("gpu_foreign_procs_max", "processes", Kind.tally, DOWN, "GPU compute processes not ours"),
    _m("gpu_foreign_peak_bytes", B, M, NONE, "their NVML usedGpuMemory, peak"),
    _rep("client_cpu_cores", "cores", Kind.ratio, DOWN, "worker CPU seconds ÷ repetition window"),
    _rep("server_cpu_cores", "cores", Kind.ratio, NONE, "descendants' CPU seconds ÷ window"),
    _rep("foreign_cpu_cores", "cores", Kind.ratio, DOWN, "CPU seconds outside the tree ÷ window"),
    _rep("client_loop_lag_max_s", S, L, DOWN, "latest wake-up of the client's event loop"),
    _m("samples", "samples", Kind.tally, NONE, "resource samples in a repetition's window"),
    _m("load_time_s", S, Kind.time, DOWN, "wall time of runner.load()"),
    # cost
    COST_OUTPUT,
    _m("cost_per_1m_input_tokens_{cur}", "{cur}", C, DOWN, "the same with input throughput"),
    _m("cost_per_1m_total_tokens_{cur}", "{cur}", C, DOWN, "the same with total throughput"),
    _m("gpu_energy_cost_per_1m_output_tokens_{cur}", "{cur}", C, DOWN, "GPU J/token × kWh price"),
    _m("cpu_energy_cost_per_1m_output_tokens_{cur}", "{cur}", C, DOWN, "CPU J/token × kWh price"),
    # model file
    MODEL_FILE,
    _m("model_params", "parameters", Kind.model, NONE, "Σ tensor elements of the file"),
    MODEL_BPW,
    _m("artifact_build_s", S, Kind.time, NONE, "time to build the file in this cell"),
    # decode roofline (harness/metrics/roofline.py)
    _m("roofline.bytes_per_step", B, M, NONE, "weights + concurrency × KV bytes at mean context"),
    _m("roofline.achieved_bytes_s", "bytes/s", T, UP, "bytes per decode step × decode_tok_s"),
    _m("roofline.peak_bytes_s", "bytes/s", T, NONE, "peak read bandwidth: datasheet or measured"),
    _m("roofline.efficiency", ONE, Kind.ratio, UP, "achieved ÷ peak read bandwidth"),
    # memory prediction (harness/feasibility)
    _m("memory.predicted_weights_bytes", B, M, NONE, "predicted weight bytes"),
    _m("memory.predicted_kv_bytes", B, M, NONE, "predicted KV cache bytes"),
    _m("memory.predicted_activation_bytes", B, M, NONE, "predicted activation bytes"),
    _m("memory.predicted_overhead_bytes", B, M, NONE, "predicted runtime overhead bytes"),
    _m("memory.predicted_peak_bytes", B, M, NONE, "what a monitor should see: need or reserve"),
    _m("memory.usable_bytes", B, M, NONE, "what the runtime may use on the device"),
    _m("memory.headroom_bytes", B, M, NONE, "usable − need"),
    _m("memory.max_kv_tokens", "tokens", M, NONE, "KV tokens that fit beside the rest"),
    _m("memory.measured_peak_bytes", B, M, DOWN, "the measured peak the prediction is held to"),
    _m("memory.prediction_ratio", ONE, Kind.ratio, NONE, "measured ÷ predicted peak"),
    # quality (docs/quality.md)
    _m("eval_time_s", S, Kind.time, NONE, "wall time of the quality eval", doc="quality.md"),
    _m(
        "quality.<k>", ONE, Q, UP, "a slice's score, change and CI; the aggregate", doc="quality.md"
    ),
    _m("quality.corpus_ppl", ONE, Q, DOWN, "perplexity on the held-out corpus", doc="quality.md"),
    _m("fidelity.<k>", ONE, Q, NONE, "agreement with the baseline's logits", doc="quality.md"),
)

SERIES: Final[tuple[Series, ...]] = (
    Series("ttft", "send → first token chunk"),
    Series("ttfct", "send → first content chunk"),
    Series("itl", "gap per token between token chunks"),
    Series("itl_chunk", "gap between token chunks"),
    Series("tpot", "(e2e − TTFT) ÷ (output tokens − 1)"),
    Series("e2e", "send → last token chunk"),
    Series("send_lag", "send − scheduled − queued"),
)
PERCENTILES: Final = (50, 90, 95, 99)
SUMMARY_SUFFIXES: Final = ("median", "std", "cv", "ci95_lo", "ci95_hi")

# The tags read back by name (the tracking store, reports): one constant each.
KIND: Final = "harness.kind"
RECORD_SCHEMA: Final = "harness.record_schema"
CELL_KEY: Final = "harness.cell_key"
CELL_ID: Final = "harness.cell_id"
SWEEP_ID: Final = "harness.sweep_id"
SWEEP_NAME: Final = "harness.sweep_name"
SYNTHETIC: Final = "harness.synthetic"
STATUS: Final = "harness.status"
REASON: Final = "harness.reason"
VALIDITY: Final = "harness.validity"
FLAGS: Final = "harness.flags"
UNSTABLE: Final = "harness.unstable"

TAGS: Final[tuple[Tag, ...]] = (
    Tag(KIND, "cell or sweep"),
    Tag(RECORD_SCHEMA, "the version of this run's record layout"),
    Tag(CELL_KEY, "content hash of what decides the cell's numbers"),
    Tag(CELL_ID, "the cell's axis values and extra overrides"),
    Tag(SWEEP_ID, "the sweep the run belongs to"),
    Tag(SWEEP_NAME, "its name"),
    Tag("harness.estimator_version", "the version of the metric definitions"),
    Tag("harness.overrides", "the Hydra overrides that compose the cell"),
    Tag("harness.choice.<k>", "the option chosen for an axis"),
    Tag(SYNTHETIC, "true: injected numbers (FakeRunner), never reported"),
    Tag(STATUS, "ok, invalid, failed, skipped, interrupted"),
    Tag(REASON, "why the status is what it is"),
    Tag("harness.error_tail", "the last lines of a failed cell's error"),
    Tag(VALIDITY, "VALID or INVALID"),
    Tag("harness.invalid_reasons", "what made it INVALID"),
    Tag(FLAGS, "caveats that travel with the numbers"),
    Tag(UNSTABLE, "repetition metrics that vary too much"),
    Tag("harness.equivalence", "sweep: settings that differ between comparable cells"),
    Tag("runtime.name", "the runner"),
    Tag("runtime.<k>", "runtime versions and build details"),
    Tag("absent.<m>", "why metric <m> was not measured"),
    Tag("artifact.<k>", "the model file's hash, type, recipe and tensor types"),
    Tag("checkpoint.<k>", "where the source came from: entry, location, Hub repo and commit"),
    Tag("roofline.peak_source", "where the peak bandwidth came from"),
    Tag("image.<k>", "the Dockerfile.gpu image: target, base, digest, CUDA, packages"),
    Tag("price.<k>", "the price snapshot behind the costs"),
    Tag("support.caveat", "it runs, but not as its name suggests"),
    Tag("memory.<k>", "the fit verdict and where the prediction came from"),
    Tag("quality.<k>", "the quality gate's verdicts, role, baseline and provenance"),
    Tag("report.<k>", "sweep: the report's decision and chosen cells"),
    Tag("host.<k>", "machine"),
    Tag("cpu.<k>", "CPU model and usable cores"),
    Tag("gpu.<k>", "GPU names, driver, CUDA, or why absent"),
    Tag("python.<k>", "interpreter"),
    Tag("git.<k>", "commit and dirty flag"),
    Tag("pkg.<k>", "installed package versions"),
)

BY_NAME: Final[dict[str, Metric]] = {m.name: m for m in METRICS}


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"(\{cur\}|<[a-z]+>)", name)
    body = "".join(
        "[a-z]+" if p == "{cur}" else r"[\w.\-]+" if p.startswith("<") else re.escape(p)
        for p in parts
    )
    return re.compile(f"^{body}$")


_PATTERNS: Final = tuple((_pattern(m.name), m) for m in METRICS if "{" in m.name or "<" in m.name)
_TAG_PATTERNS: Final = tuple(_pattern(t.name) for t in TAGS)


def _unsummarized(name: str) -> str | None:
    """``<name>`` of ``<name>_median`` ... ``<name>_ci95_hi``; None for any other name."""
    for suffix in SUMMARY_SUFFIXES:
        if name.endswith(f"_{suffix}"):
            return name.removesuffix(f"_{suffix}")
    return None


def resolve(name: str) -> Metric | None:
    """The table entry a recorded metric name stands for; None when it has none. Exact names
    win over a family (``engine_<k>``) and the summary suffixes."""
    name = name.removeprefix("rep.")
    candidates = [n for n in (name, _unsummarized(name)) if n]
    for candidate in candidates:
        if candidate in BY_NAME:
            return BY_NAME[candidate]
    for series in SERIES:
        rest = name.removeprefix(f"{series.name}_")
        if rest != name and rest in _series_suffixes():
            unit = "samples" if rest == "samples" else S
            return Metric(name, unit, L, DOWN if unit == S else NONE, series.definition)
    for candidate in candidates:
        found = next((m for p, m in _PATTERNS if p.match(candidate)), None)
        if found is not None:
            return found
    return None


def is_tag(name: str) -> bool:
    return any(p.match(name) for p in _TAG_PATTERNS)


def _series_suffixes() -> tuple[str, ...]:
    return (*(f"p{q}_s" for q in PERCENTILES), "max_s", "samples")

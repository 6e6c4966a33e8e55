"""The recommendation on hand-made cells: which cell each scenario picks, what it rules out and
why, and what it says when nothing qualifies."""

from __future__ import annotations

import math

import pytest

from harness.config.decision import DecisionConfig, LatencySlo, MemoryOf, PriceOverride
from harness.tracking.store import RunData
from reports.decide import recommend
from reports.table import build, short_names

MIB = 2**20


def cell(
    precision: str,
    *,
    file_mib: float,
    tok_s: float,
    kld: float | None = None,
    slices: dict[str, tuple[float, float, float]] | None = None,
    status: str = "ok",
    role: str = "variant",
    itl_p95: float | None = 0.008,
    peak_mib: float | None = None,
    bpw: float = 8.0,
) -> RunData:
    metrics = {
        "output_throughput_tok_s": tok_s,
        "output_throughput_tok_s_ci95_lo": tok_s * 0.97,
        "output_throughput_tok_s_ci95_hi": tok_s * 1.03,
        "cost_per_1m_output_tokens_usd": 0.1 / (tok_s * 3600) * 1e6,
        "cost_per_1m_output_tokens_usd_ci95_lo": 0.1 / (tok_s * 1.03 * 3600) * 1e6,
        "cost_per_1m_output_tokens_usd_ci95_hi": 0.1 / (tok_s * 0.97 * 3600) * 1e6,
        "model_file_bytes": file_mib * MIB,
        "model_bpw": bpw,
        "itl_max_s": 0.02,
    }
    if itl_p95 is not None:
        metrics["itl_p95_s"] = itl_p95
    if peak_mib is not None:
        metrics["memory.measured_peak_bytes"] = peak_mib * MIB
    if kld is not None:
        metrics["fidelity.kld_mean"] = kld
        metrics["fidelity.n_tokens"] = 510
    tags = {
        "harness.status": status,
        "harness.validity": "VALID" if status == "ok" else "",
        "harness.choice.model": "m",
        "harness.choice.precision": precision,
        "harness.cell_id": f"m/gguf/{precision}",
        "quality.role": role,
        "price.currency": "USD",
        "price.per_hour": "0.1",
    }
    if status != "ok":
        tags["harness.reason"] = "worker exited with code 1"
    for name, (delta, lo, hi) in (slices or {}).items():
        metrics[f"quality.{name}.delta"] = delta
        metrics[f"quality.{name}.delta_ci_low"] = lo
        metrics[f"quality.{name}.delta_ci_high"] = hi
        tags[f"quality.verdict.{name}"] = "INCONCLUSIVE"
    return RunData(f"run-{precision}", precision, "FINISHED", tags, {}, metrics)


SMALL_LOSS = {"arithmetic": (-0.005, -0.015, 0.005), "json": (0.0, -0.01, 0.01)}
UNPROVEN = {"arithmetic": (-0.01, -0.30, 0.20), "json": (0.0, -0.25, 0.25)}
BIG_LOSS = {"arithmetic": (-0.12, -0.20, -0.05), "json": (0.0, -0.01, 0.01)}


def sweep() -> list[RunData]:
    return [
        cell("f16", file_mib=258, tok_s=108, kld=None, role="baseline", bpw=16),
        cell("q8_0", file_mib=138, tok_s=142, kld=0.003, slices=SMALL_LOSS, bpw=8.5),
        cell("q4_k_m", file_mib=100, tok_s=139, kld=0.09, slices=UNPROVEN, bpw=6.2),
        cell("q2_k", file_mib=84, tok_s=183, kld=0.36, slices=BIG_LOSS, bpw=5.1),
    ]


LAPTOP = DecisionConfig(
    name="laptop",
    memory_budget_gib=150e6 / 2**30,
    max_slice_loss=0.02,
    latency_p95=LatencySlo(itl_s=0.05),
)


def scenarios(runs: list[RunData], d: DecisionConfig) -> dict[str, object]:
    rec = recommend(build(runs, {}, d), d)
    return {s.key: s for s in rec.scenarios}


def test_laptop_picks_the_best_quality_that_fits_and_says_why() -> None:
    s = scenarios(sweep(), LAPTOP)
    memory = s["memory_bound"]
    assert memory.chosen == "q8_0"  # f16 is over 150 MB; q8_0 has the lowest KLD of the rest
    assert memory.why.startswith(
        "q8_0 has the lowest KLD vs the baseline: KLD 0.0030 nats, among 2"
    )
    ruled = dict(memory.ruled_out)
    assert ruled["f16"] == "memory: weights 258.0 MiB over the 143.1 MiB budget"
    assert ruled["q2_k"].startswith("quality: arithmetic −12.0 points (CI −20.0 to −5.0)")
    assert "q4_k_m" not in ruled  # unproven, not ruled out: still a candidate
    assert memory.candidates == ("q8_0", "q4_k_m")
    assert dict(memory.unproven)["q4_k_m"].startswith("quality: not proven within 2 points")


def test_cost_bound_takes_the_cheapest_that_passes_the_gate() -> None:
    s = scenarios(sweep(), LAPTOP)
    cost = s["cost_bound"]
    # q2_k is the cheapest but loses 12 points; q8_0 (142 tok/s) beats q4_k_m (139 tok/s)
    assert cost.chosen == "q8_0"
    assert "lowest cost per 1M output tokens, 0.1956 USD" in cost.why
    assert "statistically tied with q4_k_m" in cost.why  # CIs of ±3 % overlap
    assert s["quality_bound"].chosen == "q8_0"


def test_proof_required_rules_out_unproven_quality() -> None:
    d = DecisionConfig(name="lab", max_slice_loss=0.02, require_proof=True)
    s = scenarios(sweep(), d)
    ruled = dict(s["cost_bound"].ruled_out)
    assert ruled["q4_k_m"].startswith("quality: not proven within 2 points")
    assert s["cost_bound"].candidates == ("q8_0", "f16")  # f16: the baseline, within by definition
    assert "memory_bound" not in s and "quality_bound" not in s  # no budget, no SLO


def test_no_feasible_cell_names_the_binding_constraint() -> None:
    d = DecisionConfig(name="tiny", memory_budget_gib=50 * MIB / 2**30, max_slice_loss=0.02)
    s = scenarios(sweep(), d)["memory_bound"]
    assert s.chosen is None and s.candidates == ()
    # q2_k (84 MiB) is the smallest and still over 50 MiB; dropping the budget admits q8_0
    assert s.binding.startswith("memory")
    assert "No cell satisfies the constraints; binding: memory" in s.why
    assert len(s.ruled_out) == 4


def test_joint_binding_when_no_single_relaxation_helps() -> None:
    runs = [
        cell("a", file_mib=300, tok_s=100, kld=0.001, slices=SMALL_LOSS),
        cell("b", file_mib=80, tok_s=200, kld=0.5, slices=BIG_LOSS),
    ]
    d = DecisionConfig(memory_budget_gib=100 * MIB / 2**30, max_slice_loss=0.02)
    s = scenarios(runs, d)["memory_bound"]
    assert s.chosen is None
    assert s.binding == "memory or quality (relaxing it alone would admit a cell)"


def test_failed_cells_are_ruled_out_with_their_reason_and_all_failed_is_said() -> None:
    runs = [cell("q8_0", file_mib=138, tok_s=142, status="failed")]
    s = scenarios(runs, DecisionConfig())["cost_bound"]
    assert s.chosen is None
    assert s.ruled_out == (("q8_0", "status: failed: worker exited with code 1"),)
    assert s.binding.startswith("no cell ran successfully")


def test_latency_slo_uses_p95_then_the_max_as_a_bound() -> None:
    runs = [
        cell("slow", file_mib=100, tok_s=50, itl_p95=0.08),
        cell("fast", file_mib=100, tok_s=40, itl_p95=None),  # p95 absent, max 20 ms bounds it
    ]
    d = DecisionConfig(latency_p95=LatencySlo(itl_s=0.05))
    s = scenarios(runs, d)
    assert dict(s["cost_bound"].ruled_out)["slow"] == "latency: ITL p95 80 ms over 50 ms"
    assert s["cost_bound"].chosen == "fast"
    assert "max 20.0 ms" not in s["cost_bound"].why  # proven, so not an 'unproven' caveat


def test_without_quality_measurements_the_proxy_is_named() -> None:
    runs = [cell("q8_0", file_mib=138, tok_s=142, bpw=8.5), cell("q4", file_mib=100, tok_s=150)]
    d = DecisionConfig(memory_budget_gib=1.0, max_slice_loss=0.02)
    s = scenarios(runs, d)["memory_bound"]
    assert s.chosen == "q8_0"
    assert "most bits per weight (a proxy: quality was not measured): 8.50 bits" in s.why
    assert "quality not measured (no eval for this cell)" in s.why


def test_peak_memory_budget_and_price_override() -> None:
    runs = [
        cell("a", file_mib=100, tok_s=100, peak_mib=900),
        cell("b", file_mib=120, tok_s=100, peak_mib=500),
    ]
    d = DecisionConfig(
        memory_budget_gib=600 * MIB / 2**30,
        memory_of=MemoryOf.peak,
        price=PriceOverride(per_hour=3.6, currency="EUR", snapshot="2026-11-01"),
    )
    table = build(runs, {}, d)
    assert table.frame.loc["b", "cost_1m"] == pytest.approx(3.6 / (100 * 3600) * 1e6)
    assert table.currency == "EUR" and "3.6 EUR/hour" in table.price_note
    s = {x.key: x for x in recommend(table, d).scenarios}
    assert s["memory_bound"].chosen == "b"
    assert dict(s["memory_bound"].ruled_out)["a"].startswith("memory: measured peak 900.0 MiB")


def test_an_unstable_choice_says_so() -> None:
    runs = sweep()
    runs[1].tags["harness.unstable"] = "output_throughput_tok_s: CV 12.0% ≥ 10%"
    s = scenarios(runs, LAPTOP)["memory_bound"]
    assert s.chosen == "q8_0"
    assert s.why.endswith("flagged unstable (output_throughput_tok_s: CV 12.0% ≥ 10%).")


def test_synthetic_runs_never_enter_the_table() -> None:
    fake = cell("fake", file_mib=1, tok_s=1e6)
    fake.tags["harness.synthetic"] = "true"
    table = build([fake, *sweep()], {}, DecisionConfig())
    assert list(table.frame.index) == ["f16", "q8_0", "q4_k_m", "q2_k"]
    assert table.frame.loc["f16", "worst_delta"] == 0.0  # the baseline is the reference
    assert math.isnan(table.frame.loc["f16", "kld"])  # no fidelity rows logged: not invented


def test_absent_values_keep_the_runs_reason() -> None:
    run = cell("q8_0", file_mib=138, tok_s=142, itl_p95=None)
    run.tags["absent.itl_p95_s"] = "42 samples, p95 needs >= 59"
    run.tags["absent.cpu_energy_j"] = "RAPL not readable: /sys/class/powercap does not exist"
    table = build([run], {}, DecisionConfig())
    assert table.absent["q8_0"] == {
        "itl_p95_s": "42 samples, p95 needs >= 59",
        "cpu_j_per_tok": "RAPL not readable: /sys/class/powercap does not exist",
    }
    assert math.isnan(table.frame.loc["q8_0", "itl_p95_s"])


def test_empty_table_still_decides() -> None:
    rec = recommend(build([], {}, DecisionConfig()), DecisionConfig())
    (s,) = rec.scenarios
    assert s.chosen is None and "no cell ran successfully" in s.binding


def test_short_names_keep_only_what_varies() -> None:
    runs = sweep()
    assert short_names(runs) == ["f16", "q8_0", "q4_k_m", "q2_k"]
    assert short_names([runs[0], runs[0]]) == ["f16", "f16 #2"]

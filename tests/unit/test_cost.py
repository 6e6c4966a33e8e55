import pytest

from harness.config.schema import CostConfig, HardwareConfig
from harness.metrics.cost import costs, per_million


def hw(price: float | None = 2.0) -> HardwareConfig:
    return HardwareConfig(
        name="box", price_per_hour=price, price_snapshot="2026-11-23", price_source="test"
    )


def test_cost_per_million_tokens() -> None:
    # 2 USD/h at 100 tok/s: 360,000 tokens per hour -> 5.5556 USD per 1M tokens
    assert per_million(2.0, 100.0) == pytest.approx(2.0 / 360_000 * 1e6)
    assert per_million(2.0, 100.0) == pytest.approx(5.5555556)


def test_throughput_ci_maps_to_a_reversed_cost_ci() -> None:
    metrics = {
        "output_throughput_tok_s": 100.0,
        "output_throughput_tok_s_ci95_lo": 80.0,
        "output_throughput_tok_s_ci95_hi": 125.0,
        "input_throughput_tok_s": 400.0,
    }
    out, absent = costs(CostConfig(), hw(), metrics)
    assert out["cost_per_1m_output_tokens_usd"] == pytest.approx(5.5555556)
    assert out["cost_per_1m_output_tokens_usd_ci95_lo"] == pytest.approx(2e6 / (125 * 3600))
    assert out["cost_per_1m_output_tokens_usd_ci95_hi"] == pytest.approx(2e6 / (80 * 3600))
    assert out["cost_per_1m_input_tokens_usd"] == pytest.approx(2e6 / (400 * 3600))
    assert "cost_per_1m_input_tokens_usd_ci95_lo" not in out
    assert absent["gpu_energy_cost_per_1m_output_tokens_usd"] == (
        "no gpu energy measurement in this cell"
    )


def test_energy_cost_from_measured_joules_only() -> None:
    metrics = {"output_throughput_tok_s": 100.0, "gpu_energy_per_output_token_j": 0.36}
    out, absent = costs(CostConfig(energy_price_per_kwh=0.25), hw(), metrics)
    # 0.36 J/token x 1e6 tokens = 0.1 kWh -> 0.025 USD
    assert out["gpu_energy_cost_per_1m_output_tokens_usd"] == pytest.approx(0.025)
    out, absent = costs(CostConfig(), hw(), metrics)
    assert absent["gpu_energy_cost_per_1m_output_tokens_usd"] == (
        "cost.energy_price_per_kwh is not set"
    )


def test_disabled_cost_is_absent_not_zero() -> None:
    out, absent = costs(CostConfig(enabled=False), hw(None), {"output_throughput_tok_s": 1.0})
    assert out == {} and absent == {"cost_per_1m_output_tokens_usd": "cost.enabled=false"}

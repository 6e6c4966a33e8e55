"""Cost per token from a price snapshot and measured throughput (definitions: docs/metrics.md).

cost per 1M tokens = price per hour ÷ (tokens/s × 3600) × 1e6. Each token kind is charged the
machine's whole time (input and output costs are two views of one bill, not a split of it).
The throughput's 95 % CI maps to the cost's CI reversed: [C(tp_hi), C(tp_lo)]. Energy cost
uses measured joules only; without an energy reading it is absent, never estimated from TDP.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.config.schema import CostConfig, HardwareConfig

J_PER_KWH = 3.6e6
KINDS = ("output", "input", "total")


def per_million(price_per_hour: float, tokens_per_s: float) -> float:
    return price_per_hour / (tokens_per_s * 3600.0) * 1e6


def _suffix(hw: HardwareConfig) -> str:
    return hw.price_currency.lower()


def token_costs(hw: HardwareConfig, metrics: Mapping[str, float]) -> dict[str, float]:
    """Cost per 1M output/input/total tokens with the CI carried through."""
    assert hw.price_per_hour is not None
    out: dict[str, float] = {}
    for kind in KINDS:
        tp = metrics.get(f"{kind}_throughput_tok_s")
        if not tp:
            continue
        name = f"cost_per_1m_{kind}_tokens_{_suffix(hw)}"
        out[name] = per_million(hw.price_per_hour, tp)
        lo, hi = (
            metrics.get(f"{kind}_throughput_tok_s_ci95_lo"),
            metrics.get(f"{kind}_throughput_tok_s_ci95_hi"),
        )
        if lo is not None and hi is not None and lo > 0:
            out[f"{name}_ci95_lo"] = per_million(hw.price_per_hour, hi)
            out[f"{name}_ci95_hi"] = per_million(hw.price_per_hour, lo)
    return out


def energy_costs(
    cost: CostConfig, hw: HardwareConfig, metrics: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """Energy cost per 1M output tokens from the measured J/token (GPU and CPU separately)."""
    out: dict[str, float] = {}
    absent: dict[str, str] = {}
    for source in ("gpu", "cpu"):
        name = f"{source}_energy_cost_per_1m_output_tokens_{_suffix(hw)}"
        j = metrics.get(f"{source}_energy_per_output_token_j")
        if j is None:
            absent[name] = f"no {source} energy measurement in this cell"
        elif cost.energy_price_per_kwh is None:
            absent[name] = "cost.energy_price_per_kwh is not set"
        else:
            out[name] = j * 1e6 / J_PER_KWH * cost.energy_price_per_kwh
    return out, absent


def costs(
    cost: CostConfig, hw: HardwareConfig, metrics: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    if not cost.enabled:
        return {}, {f"cost_per_1m_output_tokens_{_suffix(hw)}": "cost.enabled=false"}
    out = token_costs(hw, metrics)
    energy, absent = energy_costs(cost, hw, metrics)
    return {**out, **energy}, absent


def price_tags(hw: HardwareConfig) -> dict[str, str]:
    """The snapshot a cost was computed from, so it can be recomputed when prices move."""
    return {
        "price.per_hour": str(hw.price_per_hour),
        "price.currency": hw.price_currency,
        "price.snapshot": str(hw.price_snapshot),
        "price.source": str(hw.price_source),
    }

"""The user's real constraint, as config (`conf/decision/`): what the report recommends for.

A decision never changes what a cell measures, so it is not part of any cell's identity: the
same sweep can be read again under another decision (`python -m reports sweep=X decision=Y`).
Every bound is optional; a bound left null constrains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

GIB = 2**30


class MemoryOf(StrEnum):
    """What the memory budget bounds."""

    weights = "weights"  # the model file's bytes: what a download / disk / card slot must hold
    peak = "peak"  # the measured peak of the run (RSS on CPU, VRAM on GPU): what really fits


@dataclass
class LatencySlo:
    """p95 bounds in seconds, per series (definitions: docs/metrics.md)."""

    ttft_s: float | None = None  # time to first token
    itl_s: float | None = None  # inter-token latency, per token
    e2e_s: float | None = None  # whole request


@dataclass
class PriceOverride:
    """Price every cell at this rate instead of the snapshot its run recorded (e.g. what the
    target machine costs). Null `per_hour`: use each run's own `price.*` snapshot."""

    per_hour: float | None = None
    currency: str = "USD"
    snapshot: str | None = None  # YYYY-MM-DD
    source: str | None = None  # a URL, a contract, or "assumption: ..."


@dataclass
class DecisionConfig:
    name: str = "none"
    description: str = ""  # who decides, on what machine: shown at the top of the report
    memory_budget_gib: float | None = None  # GiB (2^30 bytes)
    memory_of: MemoryOf = MemoryOf.weights
    latency_p95: LatencySlo = field(default_factory=LatencySlo)
    # Largest tolerated loss on ANY quality slice, as a fraction (0.02 = 2 points), judged on
    # the paired per-slice CI against the baseline: a cell is ruled out when the loss is
    # significant beyond it (CI upper bound below -max), proven within it when the CI lower
    # bound is at or above -max, and unproven otherwise.
    max_slice_loss: float | None = None
    max_kld: float | None = None  # mean KL divergence vs the baseline, nats
    require_proof: bool = False  # true: unproven quality rules a cell out, too
    price: PriceOverride = field(default_factory=PriceOverride)

    def __post_init__(self) -> None:
        for name in ("memory_budget_gib", "max_slice_loss", "max_kld"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"decision.{name}={value} must be > 0 or null")
        if self.max_slice_loss is not None and self.max_slice_loss >= 1:
            raise ValueError(
                f"decision.max_slice_loss={self.max_slice_loss} is a fraction "
                "(0.02 = 2 points), so it must be below 1"
            )
        for series in ("ttft_s", "itl_s", "e2e_s"):
            value = getattr(self.latency_p95, series)
            if value is not None and value <= 0:
                raise ValueError(f"decision.latency_p95.{series}={value} must be > 0 or null")
        if self.price.per_hour is not None and self.price.per_hour <= 0:
            raise ValueError(f"decision.price.per_hour={self.price.per_hour} must be > 0")

    @property
    def memory_budget_bytes(self) -> float | None:
        return None if self.memory_budget_gib is None else self.memory_budget_gib * GIB

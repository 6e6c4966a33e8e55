"""Typed config of the quality eval (``eval.*``): levels, gates and the baseline selector.

Kept apart from harness/config/schema.py, which re-exports it; checked against the suite's slices
when cells are planned (harness/quality/gate.py), since that needs the suite's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EvalLevel(StrEnum):
    none = "none"  # performance only
    smoke = "smoke"  # a few items per slice: catches gross breakage in minutes
    full = "full"  # every item: the gate a release decision can rest on


@dataclass
class GateSpec:
    """Fail a slice whose score drops more than ``max_drop`` (a fraction: 0.02 = 2 points)
    below the baseline with ``confidence``; fewer than ``min_items`` paired items: INCONCLUSIVE."""

    max_drop: float = 0.05
    confidence: float = 0.95
    min_items: int = 30


@dataclass
class SliceGateSpec:
    """A per-slice threshold; a field left null takes ``eval.gate``'s value."""

    max_drop: float | None = None
    confidence: float | None = None
    min_items: int | None = None

    def over(self, default: GateSpec) -> GateSpec:
        return GateSpec(
            max_drop=default.max_drop if self.max_drop is None else self.max_drop,
            confidence=default.confidence if self.confidence is None else self.confidence,
            min_items=default.min_items if self.min_items is None else self.min_items,
        )


@dataclass
class EvalConfig:
    """Quality against the baseline: generation slices, log-likelihood multiple choice and
    reference-logit fidelity over the suite's held-out corpus. Checked against the suite's
    slices when cells are planned (harness/quality/gate.py), since that needs its manifest."""

    level: EvalLevel = EvalLevel.none
    suite: str = "core"
    slices: list[str] = field(default_factory=list)  # empty: every slice of the suite
    items: int | None = None  # per slice (a prefix that covers every stratum); None: all
    items_per_slice: dict[str, int | None] = field(default_factory=dict)  # per slice; null: all
    max_new_tokens: dict[str, int] = field(default_factory=dict)  # generation cap per slice
    default_max_new_tokens: int = 192
    chat_template: bool = True  # wrap prompts as one user turn in the model's own template
    metric: dict[str, str] = field(default_factory=dict)  # gated score field; default correct
    # Overrides that turn a cell into its baseline, e.g. {precision: f16}: the cell they
    # produce must be in the sweep or already finished in the tracking store. A null value
    # drops an inherited key (Hydra merges dicts); nested keys name config values:
    # {precision: null, runtime: {type_k: f16}} means the override runtime.type_k=f16.
    baseline: dict[str, Any] = field(default_factory=lambda: {"precision": "f16"})
    gate: GateSpec = field(default_factory=GateSpec)
    gates: dict[str, SliceGateSpec] = field(default_factory=dict)  # per-slice thresholds
    corpus_windows: int | None = 2  # windows of the corpus scored for fidelity; None: all
    window_tokens: int = 512  # each window's length; its second half is scored
    seed: int = 0  # bootstrap resampling

    def __post_init__(self) -> None:
        for name in ("items", "corpus_windows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"eval.{name}={value} must be >= 1 or null")
        tables: dict[str, dict[str, int | None]] = {
            "items_per_slice": self.items_per_slice,
            "max_new_tokens": dict(self.max_new_tokens),
        }
        for name, table in tables.items():
            for key, value in table.items():
                if value is not None and value < 1:
                    raise ValueError(f"eval.{name}.{key}={value} must be >= 1")
        if self.window_tokens < 16:
            raise ValueError(f"eval.window_tokens={self.window_tokens} must be >= 16")
        if self.level is not EvalLevel.none and not self.selector:
            raise ValueError("eval.baseline is empty: name the overrides that give the baseline")

    @property
    def enabled(self) -> bool:
        return self.level is not EvalLevel.none

    @property
    def selector(self) -> dict[str, str]:
        """The baseline overrides in effect: nested keys dotted, null values dropped."""

        def flat(data: dict[str, Any], prefix: str) -> dict[str, str]:
            out: dict[str, str] = {}
            for key, value in data.items():
                if isinstance(value, dict):
                    out.update(flat(value, f"{prefix}{key}."))
                elif value is not None:
                    out[f"{prefix}{key}"] = str(value)
            return out

        return flat(dict(self.baseline), "")

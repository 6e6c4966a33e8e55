"""Which checkpoint a cell starts from: pure, from the model config and the cell's axes.

In order:
1. ``model.checkpoints[method]`` when it is in the format the runtime loads (a GGUF file for
   llama.cpp, a checkpoint directory for the rest) and holds the cell's precision (a GGUF
   repository lists its files per precision; a directory names the precision it holds, or none
   for the model as published);
2. ``model.source``, the one file or directory every cell derives from (the artifact cache
   builds what the method needs from it, as it always has);
3. the baseline ``model.checkpoints.none``, for a method that quantizes a full-precision
   checkpoint as it loads (torchao, bitsandbytes) or casts it (method none at f16, bf16).
Anything else has no checkpoint: the cell is skipped with one line listing what there is.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.artifacts.hub import DIR_PATTERNS
from harness.config.schema import CheckpointConfig, ModelConfig
from harness.feasibility.support import method_spec
from runners import ModelFormat

BASELINE = "none"


class NoCheckpoint(ValueError):
    """The model has no checkpoint this cell can start from."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The checkpoint entry a cell uses (``spec`` None: ``model.source``)."""

    name: str  # the entry's key in model.checkpoints, or "source"
    spec: CheckpointConfig | None
    patterns: tuple[str, ...]  # the files a Hub checkpoint contributes

    @property
    def where(self) -> str:
        return f"model.checkpoints.{self.name}" if self.spec else "model.source"

    @property
    def exact(self) -> bool:
        """Published in the cell's own method and precision: loaded as is, nothing derived."""
        return self.spec is not None and self.spec.path is None


def _holds(spec: CheckpointConfig, precision: str, fmt: ModelFormat) -> tuple[str, ...] | None:
    """The patterns that give ``precision`` from this entry; None when it cannot."""
    if spec.is_gguf != (fmt is ModelFormat.gguf):
        return None
    if spec.path is not None:
        return ()
    if spec.files:
        pattern = spec.files.get(precision)
        return (pattern,) if pattern else None
    return DIR_PATTERNS if spec.precision in (None, precision) else None


def _loads_baseline(method: str, precision: str) -> bool:
    spec = method_spec(method)
    if method == BASELINE:
        return precision != "native"  # cast at load (native is the entry's own)
    return spec is not None and not spec.prequantized and ModelFormat.hf.value in spec.formats


def choose(model: ModelConfig, method: str, precision: str, fmt: ModelFormat) -> Choice:
    """The cell's checkpoint, or NoCheckpoint naming what the model has."""
    own = model.checkpoint_table.get(method)
    if own is not None and (patterns := _holds(own, precision, fmt)) is not None:
        return Choice(method, own, patterns)
    if model.source is not None:
        return Choice("source", None, ())
    base = model.checkpoint_table.get(BASELINE)
    if base is not None and fmt is ModelFormat.hf and _loads_baseline(method, precision):
        patterns = _holds(base, "native", fmt)
        if patterns is not None:
            return Choice(BASELINE, base, patterns)
    raise NoCheckpoint(_missing(model, method, precision, fmt))


def _describe(name: str, spec: CheckpointConfig) -> str:
    if spec.files:
        return f"{name} ({', '.join(sorted(spec.files))})"
    return f"{name} ({spec.precision})" if spec.precision else name


def _missing(model: ModelConfig, method: str, precision: str, fmt: ModelFormat) -> str:
    kind = "a GGUF file" if fmt is ModelFormat.gguf else "a checkpoint directory"
    table = model.checkpoint_table
    have = ", ".join(_describe(n, s) for n, s in sorted(table.items())) or "none"
    own = table.get(method)
    if own is not None and own.files and fmt is ModelFormat.gguf:
        hint = f"name its file with +model.checkpoints.{method}.files.{precision}=<file or glob>"
    else:
        hint = (
            f"set model.checkpoints.{method}.path=... or model.checkpoints.{method}.repo=org/name"
        )
    return (
        f"model {model.name} has no checkpoint for method={method} precision={precision} as "
        f"{kind} (model.checkpoints has: {have}); {hint}"
    )

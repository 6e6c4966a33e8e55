"""Which combinations can run at all: a minimal rule table read before anything is loaded.

Rules are data (what each method can produce) plus the capabilities each runner declares
(devices, methods, precisions); nothing here tests a runner's name. A cell that breaks a rule
is recorded as skipped with the reason and never launched.
"""

from __future__ import annotations

from harness.config import HarnessConfig
from runners import get_runner
from runners.llama_cpp import FTYPES

# What each quantization method can produce. `none` runs the checkpoint as published.
METHOD_PRECISIONS: dict[str, frozenset[str]] = {
    "gguf": frozenset(FTYPES),
    "none": frozenset({"native"}),
}


def _listed(items: frozenset[str]) -> str:
    return ", ".join(sorted(items))


def skip_reason(cfg: HarnessConfig) -> str | None:
    """Why this cell cannot run, or None when no rule forbids it."""
    runner = get_runner(cfg.runtime.name)
    caps = runner.capabilities
    method, precision = cfg.method.name, cfg.precision.name
    device = cfg.hardware.device.value
    if method not in METHOD_PRECISIONS:
        return f"method {method} is not supported (known: {_listed(frozenset(METHOD_PRECISIONS))})"
    if device not in caps.devices:
        return f"runtime {runner.name} does not run on {device} (runs on: {_listed(caps.devices)})"
    if method not in caps.methods:
        return f"runtime {runner.name} does not run method {method} (runs: {_listed(caps.methods)})"
    if precision not in caps.precisions:
        return (
            f"runtime {runner.name} does not run precision {precision} "
            f"(runs: {_listed(caps.precisions)})"
        )
    if precision not in METHOD_PRECISIONS[method]:
        return (
            f"method {method} cannot produce precision {precision} "
            f"(it produces: {_listed(METHOD_PRECISIONS[method])})"
        )
    return None

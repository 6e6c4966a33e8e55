"""Which combinations can run at all: a minimal rule table read before anything is loaded.

Rules are data (what each method can produce) plus the capabilities each runner declares
(devices, methods, precisions); nothing here tests a runner's name. A cell that breaks a rule
is recorded as skipped with the reason and never launched.
"""

from __future__ import annotations

from harness.config import HarnessConfig, LoadMode
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
    return load_skip_reason(cfg)


def load_skip_reason(cfg: HarnessConfig) -> str | None:
    """Load modes the runner cannot serve: streaming, and more requests in flight than it
    can hold (an in-process engine serves one stream; a server queues)."""
    runner = get_runner(cfg.runtime.name)
    caps, w = runner.capabilities, cfg.workload
    if w.mode is not LoadMode.offline and not caps.streaming:
        return f"runtime {runner.name} cannot stream; workload.mode={w.mode.value} needs it"
    limit = caps.max_concurrency
    if limit is None:
        return None
    wanted = w.concurrency if w.mode is LoadMode.closed_loop else w.max_concurrency
    if wanted is not None and wanted > limit:
        field = "concurrency" if w.mode is LoadMode.closed_loop else "max_concurrency"
        return (
            f"runtime {runner.name} serves {limit} request(s) at a time in-process; "
            f"workload.{field}={wanted} needs a server runtime (e.g. runtime=openai)"
        )
    return None

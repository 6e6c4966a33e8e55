"""Which combinations can run at all: a rule table read before anything is loaded.

Rules are data: what each quantization method produces, on which devices its kernels exist,
which packages it needs and what kind of checkpoint it starts from; plus the capabilities each
runner declares (devices, method -> precisions, model format). Nothing here tests a runner's
name. A cell that breaks a rule is recorded as skipped with the reason and never launched.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.schema import HarnessConfig, LoadMode
from runners import get_runner
from runners.llama_cpp import FTYPES

ALL_DEVICES = frozenset({"cpu", "cuda"})


@dataclass(frozen=True, slots=True)
class MethodRule:
    precisions: frozenset[str]  # what the method can produce
    devices: frozenset[str] = ALL_DEVICES  # where its kernels exist
    packages: tuple[str, ...] = ()  # distributions it needs where the worker runs
    formats: frozenset[str] = frozenset({"gguf", "hf"})  # model formats it applies to
    prequantized: bool = False  # starts from a checkpoint already quantized by its library
    why_devices: str = ""


METHODS: dict[str, MethodRule] = {
    # The checkpoint as published, loaded at its own dtype (native) or cast at load time.
    "none": MethodRule(frozenset({"native", "f32", "f16", "bf16"})),
    "gguf": MethodRule(frozenset(FTYPES), formats=frozenset({"gguf"})),
    # Weight-only quantization applied at load through transformers' quantization configs.
    "torchao": MethodRule(
        frozenset({"int8", "int4"}), packages=("torchao",), formats=frozenset({"hf"})
    ),
    "bnb": MethodRule(
        frozenset({"int8", "nf4"}),
        devices=frozenset({"cuda"}),
        packages=("bitsandbytes",),
        formats=frozenset({"hf"}),
        why_devices="bitsandbytes quantized kernels need a CUDA GPU",
    ),
    # Pre-quantized checkpoints: the method's library made them; the runtime only loads them.
    "gptq": MethodRule(
        frozenset({"int4", "int8", "native"}),
        packages=("gptqmodel",),
        formats=frozenset({"hf"}),
        prequantized=True,
    ),
    "awq": MethodRule(
        frozenset({"int4", "native"}),
        packages=("gptqmodel",),
        formats=frozenset({"hf"}),
        prequantized=True,
    ),
    "compressed_tensors": MethodRule(
        frozenset({"int4", "int8", "fp8", "native"}),
        packages=("compressed-tensors",),
        formats=frozenset({"hf"}),
        prequantized=True,
    ),
}
# How to install what each runner needs (the rest comes with the base install).
INSTALL_HINTS = {"hf": "pip install .[hf]", "openai_server": "pip install .[server]"}


def _listed(items: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(items))


def skip_reason(cfg: HarnessConfig) -> str | None:
    """Why this cell cannot run, or None when no rule forbids it."""
    runner = get_runner(cfg.runtime.name)
    caps = runner.capabilities
    method, precision = cfg.method.name, cfg.precision.name
    device = cfg.hardware.device.value
    rule = METHODS.get(method)
    if rule is None:
        return f"method {method} is not supported (known: {_listed(set(METHODS))})"
    if precision not in rule.precisions:
        return (
            f"method {method} cannot produce precision {precision} "
            f"(it produces: {_listed(rule.precisions)})"
        )
    if device not in caps.devices:
        return f"runtime {runner.name} does not run on {device} (runs on: {_listed(caps.devices)})"
    if device not in rule.devices:
        return f"method {method} does not run on {device}: {rule.why_devices}"
    if method not in caps.support:
        return f"runtime {runner.name} does not run method {method} (runs: {_listed(caps.methods)})"
    if precision not in caps.support[method]:
        return (
            f"runtime {runner.name} does not run {method} at precision {precision} "
            f"(runs {method} at: {_listed(caps.support[method])})"
        )
    fmt = cfg.runtime.model_format()
    if fmt is not None and fmt not in rule.formats:
        return (
            f"method {method} does not apply to {fmt} models, which runtime {runner.name} "
            f"loads as configured (it applies to: {_listed(rule.formats)})"
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
            f"workload.{field}={wanted} needs a server runtime (e.g. runtime=openai_server)"
        )
    return None


def required_packages(cfg: HarnessConfig) -> tuple[str, ...]:
    """Distributions the worker's interpreter must have for this cell."""
    runner = get_runner(cfg.runtime.name)
    needed = [*runner.packages, *cfg.runtime.required_packages()]
    rule = METHODS.get(cfg.method.name)
    if runner.capabilities.in_process and rule is not None:
        # a method's library is needed where the model is loaded; a server loads its own
        needed += rule.packages
    return tuple(dict.fromkeys(needed))


def missing_reason(cfg: HarnessConfig, versions: dict[str, str | None]) -> str | None:
    """A one-line reason naming the missing distributions and the install command."""
    missing = [p for p in required_packages(cfg) if versions.get(p) is None]
    if not missing:
        return None
    runner = cfg.runtime.name
    where = cfg.runtime.python or "this environment"
    hints = [INSTALL_HINTS.get(runner, "pip install " + " ".join(missing))]
    extra = [p for p in missing if p in METHODS.get(cfg.method.name, METHODS["none"]).packages]
    if extra:
        hints.append("pip install " + " ".join(extra))
    commands = " and ".join(f"`{h}`" for h in hints)
    return (
        f"runtime {runner} needs {', '.join(missing)}, not installed in {where}; "
        f"install with {commands}"
    )

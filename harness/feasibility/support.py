"""Can this cell run: one table (``support.yaml``, beside this module) and one function.

``check(config)`` answers for a cell before anything loads, in this order: the method exists
and produces the precision; the engine the runner configuration drives runs that method and
precision on the hardware's class (with a caveat when it runs, but not as its name suggests);
the method applies to the model format the runtime loads; the runner can serve the workload's
load mode. The engine is the runner's declared identity (``RunnerConfig.engine()``); nothing
here knows a runtime's name. ``missing_reason`` says which packages a cell needs where its
worker runs, with the install command, from what the runner declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from harness.config.errors import UserError
from harness.config.schema import HardwareClass, HarnessConfig, LoadMode
from runners import Engine, ModelFormat, get_runner

ANY = "*"


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What a quantization method produces and what it applies to."""

    name: str
    precisions: tuple[str, ...]  # in the table's order
    formats: frozenset[str]  # model formats it applies to (runners.ModelFormat values)
    prequantized: bool = False  # its library made the checkpoint; the runtime only loads it


@dataclass(frozen=True, slots=True)
class Rule:
    engine: Engine
    methods: frozenset[str]
    precisions: frozenset[str]  # {"*"}: every precision the method produces
    hardware: frozenset[str]  # empty: never runs, see why; {"*"}: any hardware
    why: str = ""
    caveats: tuple[tuple[str, str], ...] = ()

    def matches(self, engine: Engine, method: str, precision: str) -> bool:
        wanted = precision in self.precisions or ANY in self.precisions
        return self.engine is engine and method in self.methods and wanted


@dataclass(frozen=True, slots=True)
class Table:
    methods: Mapping[str, MethodSpec]
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Support:
    runs: bool
    reason: str | None = None  # why not, when it does not run
    caveat: str | None = None  # how it runs, when that differs from what the name suggests


def _names(value: Any) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else [str(v) for v in value])


def _engine(value: Any, where: str) -> Engine:
    try:
        return Engine(str(value))
    except ValueError:
        known = ", ".join(e.value for e in Engine)
        raise ValueError(f"{where}: unknown engine {value!r} (known: {known})") from None


def _rule(i: int, row: Mapping[str, Any], classes: set[str]) -> Rule:
    hardware = _names(row.get("hardware", []))
    caveats = {str(k): str(v) for k, v in (row.get("caveats") or {}).items()}
    unknown = (hardware - {ANY} | set(caveats)) - classes
    if unknown:
        raise ValueError(f"support rule {i}: unknown hardware class {sorted(unknown)[0]!r}")
    return Rule(
        engine=_engine(row["engine"], f"support rule {i}"),
        methods=_names(row["method"]),
        precisions=_names(row["precisions"]),
        hardware=hardware,
        why=str(row.get("why", "")),
        caveats=tuple(sorted(caveats.items())),
    )


def parse(data: Mapping[str, Any]) -> Table:
    """The table from its YAML document; an unknown engine, hardware class or method is an
    error naming the rule."""
    methods = {
        str(name): MethodSpec(
            name=str(name),
            precisions=tuple(str(p) for p in spec["precisions"]),
            formats=_names(spec.get("formats", [f.value for f in ModelFormat])),
            prequantized=bool(spec.get("prequantized", False)),
        )
        for name, spec in (data.get("methods") or {}).items()
    }
    classes = {c.value for c in HardwareClass}
    rules = tuple(_rule(i, row, classes) for i, row in enumerate(data["rules"]))
    for i, rule in enumerate(rules):
        unknown = rule.methods - set(methods) if methods else set()
        if unknown:
            raise ValueError(f"support rule {i}: unknown method {sorted(unknown)[0]!r}")
    return Table(methods, rules)


@cache
def table() -> Table:
    text = resources.files("harness.feasibility").joinpath("support.yaml").read_text()
    return parse(yaml.safe_load(text))


def engines() -> frozenset[Engine]:
    return frozenset(r.engine for r in table().rules)


def method_spec(method: str) -> MethodSpec | None:
    return table().methods.get(method)


def _class_order(name: str) -> int:
    return [c.value for c in HardwareClass].index(name)


def check_engine(
    engine: Engine,
    method: str,
    precision: str,
    hardware: str | None,
    rules: tuple[Rule, ...] | None = None,
) -> Support:
    """Whether ``engine`` runs ``method`` at ``precision`` on the hardware class ``hardware``
    (None: a class is needed only when no matching rule runs everywhere)."""
    rules = table().rules if rules is None else rules
    matching = [r for r in rules if r.matches(engine, method, precision)]
    for rule in matching:
        if ANY in rule.hardware:
            return Support(True)
        if hardware is not None and hardware in rule.hardware:
            return Support(True, caveat=dict(rule.caveats).get(hardware))
    name = engine.value
    combo = f"{name} {method} {precision}"
    if not matching:
        runs = sorted(
            f"{m} {'/'.join(sorted(r.precisions))}"
            for r in rules
            if r.engine is engine and r.hardware
            for m in r.methods
        )
        return Support(
            False, f"{combo} is not in the support matrix ({name} runs: {', '.join(runs)})"
        )
    where = sorted({h for r in matching for h in r.hardware}, key=_class_order)
    why = "; ".join(r.why for r in matching if r.why)
    if not where:
        return Support(False, f"{name} does not run {method} {precision}: {why}")
    if hardware is None:
        raise ValueError(f"{combo} depends on the hardware class, and none was given")
    detail = f": {why}" if why else ""
    return Support(False, f"{combo} runs on {', '.join(where)}, not on {hardware}{detail}")


def hardware_class(config: HarnessConfig) -> str:
    hw = config.hardware
    cls = hw.hardware_class
    if cls is None:
        choices = ", ".join(c.value for c in HardwareClass if c is not HardwareClass.cpu)
        raise UserError(
            f"hardware profile {hw.name!r} has no arch; set hardware.arch to one of: {choices}"
        )
    return cls.value


def _listed(items: frozenset[str] | set[str] | tuple[str, ...]) -> str:
    return ", ".join(sorted(items))


def _method_reason(method: str, precision: str) -> str | None:
    spec = method_spec(method)
    if spec is None:
        return f"method {method} is not supported (known: {_listed(set(table().methods))})"
    if precision not in spec.precisions:
        return (
            f"method {method} cannot produce precision {precision} "
            f"(it produces: {_listed(spec.precisions)})"
        )
    return None


def _engine_support(config: HarnessConfig) -> Support:
    engine = config.runtime.engine()
    method, precision = config.method.name, config.precision.name
    everywhere = check_engine(engine, method, precision, None, _anywhere_rules())
    if everywhere.runs:
        return everywhere
    return check_engine(engine, method, precision, hardware_class(config))


@cache
def _anywhere_rules() -> tuple[Rule, ...]:
    return tuple(r for r in table().rules if ANY in r.hardware)


def _format_reason(config: HarnessConfig) -> str | None:
    spec = method_spec(config.method.name)
    fmt = config.runtime.model_format()
    if spec is None or fmt is None or fmt in spec.formats:
        return None
    return (
        f"method {spec.name} does not apply to {fmt} models, which runtime "
        f"{config.runtime.name} loads as configured (it applies to: {_listed(spec.formats)})"
    )


def load_reason(config: HarnessConfig) -> str | None:
    """Load modes the runner cannot serve: streaming, and more requests in flight than it
    can hold (an in-process engine serves one stream; a server queues)."""
    runner = get_runner(config.runtime.name)
    caps, w = runner.capabilities, config.workload
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


def check(config: HarnessConfig) -> Support:
    """Can this cell run at all: the one answer (see the module docstring for the order)."""
    reason = _method_reason(config.method.name, config.precision.name)
    if reason is not None:
        return Support(False, reason)
    engine = _engine_support(config)
    if not engine.runs:
        return engine
    reason = _format_reason(config) or load_reason(config)
    return Support(False, reason) if reason else engine


def required_packages(config: HarnessConfig) -> dict[str, str]:
    """Distributions the worker's interpreter must have for this cell, each with the command
    that installs it: the runner's own packages, then what its configuration needs for the
    method (a method's library where the model loads, the server a launch profile starts)."""
    runner = get_runner(config.runtime.name)
    own = {p: runner.install_hint or f"pip install {p}" for p in runner.packages}
    return {**own, **config.runtime.required_packages(config.method.name)}


def missing_reason(config: HarnessConfig, versions: Mapping[str, str | None]) -> str | None:
    """A one-line reason naming the missing distributions and the install commands."""
    needed = required_packages(config)
    missing = [p for p in needed if versions.get(p) is None]
    if not missing:
        return None
    plain = [p for p in missing if needed[p] == f"pip install {p}"]
    commands: list[str] = []
    for p in missing:
        command = "pip install " + " ".join(plain) if p in plain else needed[p]
        if command not in commands:
            commands.append(command)
    where = config.runtime.python or "this environment"
    listed = " and ".join(f"`{c}`" for c in commands)
    return (
        f"runtime {config.runtime.name} needs {', '.join(missing)}, not installed in {where}; "
        f"install with {listed}"
    )

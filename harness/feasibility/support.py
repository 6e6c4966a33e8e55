"""The support matrix: which engine runs which method and precision on which hardware class.

The rules are data (``harness/feasibility/support.yaml``); this module only reads and applies them.
A combination with no rule is unsupported, and the reason lists what the engine does run;
a rule may carry a caveat per hardware class (it runs, but not as its name suggests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from harness.config.schema import HardwareClass

ANY = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    engine: str
    methods: frozenset[str]
    precisions: frozenset[str]  # {"*"}: every precision the method produces
    hardware: frozenset[str]  # empty: never runs, see why
    why: str = ""
    caveats: tuple[tuple[str, str], ...] = ()

    def matches(self, engine: str, method: str, precision: str) -> bool:
        wanted = precision in self.precisions or ANY in self.precisions
        return self.engine == engine and method in self.methods and wanted


@dataclass(frozen=True, slots=True)
class Support:
    runs: bool
    reason: str | None = None  # why not, when it does not run
    caveat: str | None = None  # how it runs, when that differs from what the name suggests


def _names(value: Any) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else [str(v) for v in value])


def parse(data: dict[str, Any]) -> tuple[Rule, ...]:
    """Rules from the YAML document; a hardware class that does not exist is an error."""
    classes = {c.value for c in HardwareClass}
    rules = []
    for i, row in enumerate(data["rules"]):
        hardware = _names(row.get("hardware", []))
        caveats = {str(k): str(v) for k, v in (row.get("caveats") or {}).items()}
        unknown = (hardware | set(caveats)) - classes
        if unknown:
            raise ValueError(f"support rule {i}: unknown hardware class {sorted(unknown)[0]!r}")
        rules.append(
            Rule(
                engine=str(row["engine"]),
                methods=_names(row["method"]),
                precisions=_names(row["precisions"]),
                hardware=hardware,
                why=str(row.get("why", "")),
                caveats=tuple(sorted(caveats.items())),
            )
        )
    return tuple(rules)


@cache
def rules() -> tuple[Rule, ...]:
    text = resources.files("harness.feasibility").joinpath("support.yaml").read_text()
    return parse(yaml.safe_load(text))


def engines() -> frozenset[str]:
    return frozenset(r.engine for r in rules())


def check(
    engine: str, method: str, precision: str, hardware: str, table: tuple[Rule, ...] | None = None
) -> Support:
    """Whether ``engine`` runs ``method`` at ``precision`` on ``hardware`` (a class name)."""
    table = rules() if table is None else table
    matching = [r for r in table if r.matches(engine, method, precision)]
    for rule in matching:
        if hardware in rule.hardware:
            return Support(True, caveat=dict(rule.caveats).get(hardware))
    combo = f"{engine} {method} {precision}"
    if not matching:
        runs = sorted(
            f"{m} {'/'.join(sorted(r.precisions))}"
            for r in table
            if r.engine == engine and r.hardware
            for m in r.methods
        )
        return Support(
            False, f"{combo} is not in the support matrix ({engine} runs: {', '.join(runs)})"
        )
    where = sorted({h for r in matching for h in r.hardware}, key=_class_order)
    why = "; ".join(r.why for r in matching if r.why)
    if not where:
        return Support(False, f"{engine} does not run {method} {precision}: {why}")
    detail = f": {why}" if why else ""
    return Support(False, f"{combo} runs on {', '.join(where)}, not on {hardware}{detail}")


def _class_order(name: str) -> int:
    return [c.value for c in HardwareClass].index(name)

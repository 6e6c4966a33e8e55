"""Which cell is each cell's quality baseline, decided before anything runs.

``eval.baseline`` is a set of overrides (e.g. ``{precision: f16}``): applied to a cell's own
overrides they compose its baseline. A cell they do not change is a baseline itself. Every
other cell's baseline must be in the sweep (it is then run first) or already finished in the
tracking store under its cell key; otherwise planning stops with the overrides to add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from harness.config.errors import UserError
from harness.plan.cell import Cell


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def baseline_overrides(overrides: Sequence[str], selector: Mapping[str, str]) -> list[str]:
    """``overrides`` with every key the selector names replaced by the selector's value; a key
    the cell appended (``+key=``, ``++key=``) keeps its prefix, or Hydra would not compose it."""
    kept = [o for o in overrides if _key(o) not in selector]
    prefix = {_key(o): o[: len(o) - len(o.lstrip("+"))] for o in overrides if _key(o) in selector}
    return kept + [f"{prefix.get(k, '')}{k}={v}" for k, v in selector.items()]


def attach(
    cells: Sequence[Cell],
    compose: Callable[[list[str]], Cell],
    finished: Callable[[list[str]], Iterable[str]],
    where: str,
) -> list[Cell]:
    """Set ``baseline_key`` on every cell with eval enabled; UserError for a baseline that is
    neither in ``cells`` (runnable) nor among ``finished`` keys."""
    runnable = {c.key for c in cells if c.skip is None and c.blocked is None}
    composed: dict[tuple[str, ...], Cell] = {}
    out, missing = [], {}
    for cell in cells:
        if not cell.config.eval.enabled or cell.skip is not None:
            out.append(cell)
            continue
        wanted = baseline_overrides(cell.overrides, cell.config.eval.selector)
        memo = tuple(wanted)
        if memo not in composed:
            composed[memo] = compose(wanted)
        base = composed[memo]
        if base.key != cell.key and base.key not in runnable:
            missing[base.key] = (cell, base)
        out.append(replace(cell, baseline_key=base.key))
    if missing:
        done = set(finished(list(missing)))
        for key, (cell, base) in missing.items():
            if key not in done:
                selector = " ".join(f"{k}={v}" for k, v in cell.config.eval.selector.items())
                blocker = base.skip or base.blocked
                why = f" (it cannot run: {blocker})" if blocker else ""
                raise UserError(
                    f"eval.baseline ({selector}) of cell {cell.cell_id}: the baseline cell "
                    f"{base.cell_id} is not runnable in this sweep{why} and has no finished run "
                    f"in {where}; add {selector} to the sweep or run it first"
                )
    return out

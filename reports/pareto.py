"""Pareto fronts over two axes, for the report's trade-off plots (pure: no plotting here)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _usable(v: float | None) -> bool:
    # A cell that was not measured reads NaN; an infinite value (e.g. the cost of a run that
    # produced no tokens) cannot be placed on an axis either: neither may sit on or shape a front.
    return v is not None and math.isfinite(v)


def _val(v: float | None) -> float:
    # Only called for points already on the front, which are finite by construction.
    if v is None:
        raise ValueError("a point on the front has no value")
    return float(v)


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """`a` and `b` are already oriented so that larger is better on both axes."""
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto_front(
    xs: Sequence[float | None],
    ys: Sequence[float | None],
    *,
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> list[bool]:
    """True for each point that no other point dominates.

    Dominated = another point is at least as good on both axes and strictly better on one, so two
    identical points are both on the front. A point with a NaN (or infinite) coordinate is never
    on the front and never dominates anything.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs has {len(xs)} values but ys has {len(ys)}")
    sx = -1.0 if minimize_x else 1.0
    sy = 1.0 if maximize_y else -1.0
    pts: list[tuple[float, float] | None] = [
        (sx * _val(x), sy * _val(y)) if _usable(x) and _usable(y) else None
        for x, y in zip(xs, ys, strict=True)
    ]
    # O(n²) is fine: a report has tens of cells, not thousands.
    return [p is not None and not any(q is not None and _dominates(q, p) for q in pts) for p in pts]


def front_order(
    xs: Sequence[float | None],
    ys: Sequence[float | None],
    *,
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> list[int]:
    """Indices of the points on the front, by ascending x (then best y first): the drawing order."""
    on = pareto_front(xs, ys, minimize_x=minimize_x, maximize_y=maximize_y)
    sy = -1.0 if maximize_y else 1.0
    idx = [i for i, f in enumerate(on) if f]
    return sorted(idx, key=lambda i: (_val(xs[i]), sy * _val(ys[i]), i))


def staircase(
    xs: Sequence[float | None],
    ys: Sequence[float | None],
    *,
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> tuple[list[float], list[float]]:
    """Vertices of the step line through the front: the best y reachable at each x.

    With x minimised, between two front points only the left one is affordable, so the line stays
    at its y until the next point's x and then steps (steps-post); with x maximised only the right
    one qualifies, so it steps first (steps-pre).
    """
    order = front_order(xs, ys, minimize_x=minimize_x, maximize_y=maximize_y)
    px = [_val(xs[i]) for i in order]
    py = [_val(ys[i]) for i in order]
    if len(order) < 2:
        return px, py
    out_x, out_y = [px[0]], [py[0]]
    for k in range(1, len(order)):
        # The corner keeps the previous y up to the next x (post), or rises first (pre).
        corner = (px[k], py[k - 1]) if minimize_x else (px[k - 1], py[k])
        out_x += [corner[0], px[k]]
        out_y += [corner[1], py[k]]
    return out_x, out_y

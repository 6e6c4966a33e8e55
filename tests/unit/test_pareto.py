from __future__ import annotations

import math

import pytest

from reports.pareto import front_order, pareto_front, staircase

NAN = math.nan
# A(1,1) B(2,3) C(3,2) D(3,4) E(1,0): each direction combination picks a different front.
XS = [1.0, 2.0, 3.0, 3.0, 1.0]
YS = [1.0, 3.0, 2.0, 4.0, 0.0]


@pytest.mark.parametrize(
    ("minimize_x", "maximize_y", "expected"),
    [
        # cheap and good: E loses to A (same x, lower y), C loses to B
        (True, True, [True, True, False, True, False]),
        # cheap and low: E (x=1, y=0) beats everything
        (True, False, [False, False, False, False, True]),
        # large and high: D (3,4) beats everything
        (False, True, [False, False, False, True, False]),
        # large and low: C (3,2) beats B and D, E (1,0) beats A
        (False, False, [False, False, True, False, True]),
    ],
)
def test_front_in_every_direction(minimize_x: bool, maximize_y: bool, expected: list[bool]) -> None:
    assert pareto_front(XS, YS, minimize_x=minimize_x, maximize_y=maximize_y) == expected


def test_identical_points_are_both_on_the_front() -> None:
    assert pareto_front([1.0, 1.0, 2.0], [5.0, 5.0, 5.0]) == [True, True, False]


def test_a_tie_on_one_axis_is_decided_by_the_other() -> None:
    # same memory, one is better on quality: the worse one is dominated
    assert pareto_front([1.0, 1.0], [2.0, 3.0]) == [False, True]
    # same quality, one is cheaper
    assert pareto_front([1.0, 2.0], [3.0, 3.0]) == [True, False]


def test_nan_is_never_on_the_front_and_dominates_nothing() -> None:
    # (NaN, 10) would beat (2, 1) on y, and (0, NaN) would beat it on x: neither counts
    assert pareto_front([NAN, 0.0, 2.0], [10.0, NAN, 1.0]) == [False, False, True]
    assert pareto_front([NAN], [NAN]) == [False]


def test_infinite_and_none_values_count_as_absent() -> None:
    assert pareto_front([math.inf, None, 5.0], [1.0, 9.0, 0.0]) == [False, False, True]


def test_empty_and_mismatched_input() -> None:
    assert pareto_front([], []) == []
    with pytest.raises(ValueError, match="xs has 2 values but ys has 1"):
        pareto_front([1.0, 2.0], [1.0])


def test_front_order_sorts_by_x() -> None:
    xs, ys = [3.0, 1.0, 2.0, NAN], [4.0, 1.0, 3.0, 9.0]
    assert front_order(xs, ys) == [1, 2, 0]
    assert front_order(XS, YS, minimize_x=False, maximize_y=False) == [4, 2]


def test_staircase_steps_after_each_point_when_x_is_minimised() -> None:
    # front A(1,1) B(2,3) D(3,4): hold the y of the cheaper point until the next one is affordable
    assert staircase(XS, YS) == ([1.0, 2.0, 2.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0, 4.0])


def test_staircase_steps_before_each_point_when_x_is_maximised() -> None:
    # front E(1,0) C(3,2) for large x, low y: beyond x=1 only C qualifies, so the line rises first
    assert staircase(XS, YS, minimize_x=False, maximize_y=False) == (
        [1.0, 1.0, 3.0],
        [0.0, 2.0, 2.0],
    )


def test_staircase_of_a_single_point() -> None:
    assert staircase([5.0, 6.0], [2.0, 1.0]) == ([5.0], [2.0])
    assert staircase([], []) == ([], [])

"""The harness owns the clock: every timestamp in a measurement comes from here.

``perf_counter_ns`` is monotonic and has the best resolution available; its origin is
arbitrary, so only differences between two readings of one process are meaningful.
"""

from __future__ import annotations

import time


def now_ns() -> int:
    return time.perf_counter_ns()


def seconds(ns: int) -> float:
    return ns / 1e9

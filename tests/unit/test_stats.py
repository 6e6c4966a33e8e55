import math

import numpy as np
import pytest

from harness.stats import percentile, sample_std, summarize


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_is_type7_like_numpy(q: float) -> None:
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3]
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_by_hand() -> None:
    # h = (4 - 1) * 0.95 = 2.85 -> 30 + 0.85 * (40 - 30) = 38.5
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_sample_std_uses_n_minus_1() -> None:
    assert sample_std([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7))
    assert sample_std([1.0]) is None


def test_summarize() -> None:
    s = summarize([10.0, 12.0, 14.0])
    assert (s.n, s.mean, s.std, s.min, s.max) == (3, 12.0, 2.0, 10.0, 14.0)
    assert s.cv == pytest.approx(2 / 12)
    empty = summarize([])
    assert (empty.mean, empty.std, empty.cv) == (None, None, None)

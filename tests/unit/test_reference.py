"""Corpus windows, the scored half of each window, and the float16 reference cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.quality.reference import (
    REFERENCE_VERSION,
    read_reference,
    reference_key,
    reference_path,
    scored_rows,
    scored_targets,
    windows,
    write_reference,
)


def test_windows_drop_the_incomplete_tail() -> None:
    tokens = list(range(20))
    assert windows(tokens, 8, None) == [list(range(8)), list(range(8, 16))]  # 16..19 dropped
    assert windows(tokens, 10, None) == [list(range(10)), list(range(10, 20))]
    assert windows(tokens, 21, None) == []


def test_windows_honour_count() -> None:
    tokens = list(range(40))
    assert windows(tokens, 8, 2) == [list(range(8)), list(range(8, 16))]
    assert windows(tokens, 8, 1) == [list(range(8))]
    assert len(windows(tokens, 8, 99)) == 5  # a count above what the corpus holds: all


@pytest.mark.parametrize("window", [8, 9])
def test_scored_row_i_predicts_token_i_plus_one(window: int) -> None:
    win = [100 + i for i in range(window)]
    rows = range(window)[scored_rows(window)]
    targets = scored_targets(win)
    half = window // 2
    assert list(rows) == list(range(half, window - 1))
    assert targets == win[half + 1 :]
    assert [win[r + 1] for r in rows] == targets


def test_scored_rows_for_window_8_by_hand() -> None:
    assert scored_rows(8) == slice(4, 7)
    assert scored_targets([10, 11, 12, 13, 14, 15, 16, 17]) == [15, 16, 17]
    logprobs = np.arange(8 * 3).reshape(8, 3)  # [window, n_vocab]
    assert logprobs[scored_rows(8)].tolist() == [[12, 13, 14], [15, 16, 17], [18, 19, 20]]


def test_write_read_round_trip(tmp_path: Path) -> None:
    window, n_vocab = 8, 5
    rng = np.random.default_rng(0)
    wins = [list(range(i * window, (i + 1) * window)) for i in range(3)]
    per = window - window // 2 - 1
    rows = [rng.normal(size=(per, n_vocab)).astype(np.float32) for _ in wins]
    path = reference_path(tmp_path, "abc123")
    assert path == tmp_path / "reference" / "abc123"
    write_reference(path, rows, wins, {"runtime": {"fake": "1"}, "n_vocab": n_vocab})

    ref = read_reference(path)
    assert ref.key == "abc123"
    assert ref.logprobs.dtype == np.float16
    assert ref.logprobs.shape == (3 * per, n_vocab)
    assert ref.windows.dtype == np.int32
    assert ref.windows.tolist() == wins
    assert ref.window == window
    assert dict(ref.meta) == {
        "runtime": {"fake": "1"},
        "n_vocab": n_vocab,
        "version": REFERENCE_VERSION,
    }
    for i, r in enumerate(rows):
        assert np.array_equal(ref.rows(i), r.astype(np.float16))
    # nothing but the three files: the temporary sibling directory is gone
    assert sorted(p.name for p in path.iterdir()) == ["logprobs.npy", "meta.json", "tokens.npy"]
    assert [p.name for p in path.parent.iterdir()] == ["abc123"]


def test_a_second_writer_of_the_same_key_keeps_the_first_entry(tmp_path: Path) -> None:
    path = tmp_path / "reference" / "k"
    wins = [[1, 2, 3, 4, 5, 6, 7, 8]]
    first = [np.zeros((3, 4), dtype=np.float32)]
    write_reference(path, first, wins, {"n": 1})
    write_reference(path, [np.ones((3, 4), dtype=np.float32)], wins, {"n": 2})
    ref = read_reference(path)
    assert np.array_equal(ref.rows(0), np.zeros((3, 4), dtype=np.float16))
    assert json.loads((path / "meta.json").read_text())["n"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["k"]


def test_reading_an_absent_entry_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_reference(tmp_path / "reference" / "missing")


def test_reference_key_changes_when_any_input_changes() -> None:
    args = ("artifact", "corpus", 512, 2, {"runner": "fake", "fake": "1"})
    key = reference_key(*args)
    assert len(key) == 24 and key == reference_key(*args)
    assert key == reference_key("artifact", "corpus", 512, 2, {"fake": "1", "runner": "fake"})
    changed = [
        ("other", "corpus", 512, 2, {"runner": "fake", "fake": "1"}),
        ("artifact", "other", 512, 2, {"runner": "fake", "fake": "1"}),
        ("artifact", "corpus", 256, 2, {"runner": "fake", "fake": "1"}),
        ("artifact", "corpus", 512, 3, {"runner": "fake", "fake": "1"}),
        ("artifact", "corpus", 512, None, {"runner": "fake", "fake": "1"}),
        ("artifact", "corpus", 512, 2, {"runner": "fake", "fake": "2"}),
        ("artifact", "corpus", 512, 2, {"runner": "fake"}),
    ]
    keys = {reference_key(*c) for c in changed}
    assert len(keys) == len(changed) and key not in keys

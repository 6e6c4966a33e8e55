"""Baseline reference log-probabilities over the held-out corpus, cached by content hash.

The corpus is tokenised by the runtime, cut into non-overlapping windows of ``window`` tokens
(an incomplete tail is dropped) and each window is evaluated from an empty cache. Only the
second half of a window is scored, as llama.cpp's perplexity tool does, so every scored token
has at least ``window // 2`` tokens of context: rows ``window // 2 .. window - 2`` of a window's
log-probabilities, predicting tokens ``window // 2 + 1 .. window - 1``.

The baseline cell writes its rows once per (model artifact, corpus, windowing, runtime and
version) into ``<cache>/reference/<key>/``: ``logprobs.npy`` (float16 [n_scored, n_vocab]; the
rounding moves KLD by < 0.1 % relative, measured on SmolLM2 q8_0 and q2_k), ``tokens.npy`` (the
int32 windows, so a variant proves it scored the same tokens) and ``meta.json``. Variants read it
memory-mapped; nothing here imports a runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Format history: "1" (first version).
REFERENCE_VERSION = "1"
REFERENCE_DIR = "reference"


def windows(tokens: Sequence[int], window: int, count: int | None) -> list[list[int]]:
    """The first ``count`` (None: all) complete, non-overlapping windows of ``window`` tokens."""
    n = len(tokens) // window
    if count is not None:
        n = min(n, count)
    return [list(tokens[i * window : (i + 1) * window]) for i in range(n)]


def scored_rows(window: int) -> slice:
    """Rows of one window's [window, n_vocab] log-probabilities that are scored."""
    return slice(window // 2, window - 1)


def scored_targets(win: Sequence[int]) -> list[int]:
    """The tokens those rows predict."""
    return list(win[len(win) // 2 + 1 :])


def reference_key(
    artifact_sha256: str,
    corpus_sha256: str,
    window: int,
    count: int | None,
    runtime: Mapping[str, str],
) -> str:
    """Content hash of everything the baseline's rows depend on."""
    blob = json.dumps(
        {
            "artifact": artifact_sha256,
            "corpus": corpus_sha256,
            "window": window,
            "count": count,
            "runtime": dict(runtime),
            "version": REFERENCE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def reference_path(cache_dir: Path, key: str) -> Path:
    return cache_dir.expanduser() / REFERENCE_DIR / key


@dataclass(frozen=True)
class Reference:
    key: str
    logprobs: NDArray[np.float16]  # memory-mapped [n_scored, n_vocab]
    windows: NDArray[np.int32]  # [n_windows, window]
    meta: Mapping[str, Any]

    @property
    def window(self) -> int:
        return int(self.windows.shape[1])

    def rows(self, i: int) -> NDArray[np.float16]:
        """The scored rows of window ``i``."""
        per = self.window - self.window // 2 - 1
        return self.logprobs[i * per : (i + 1) * per]


def write_reference(
    path: Path, rows: Sequence[NDArray[Any]], wins: Sequence[Sequence[int]], meta: Mapping[str, Any]
) -> None:
    """Write atomically: a temporary sibling directory renamed into place (a concurrent writer
    of the same key produced the same bytes, so losing the race is fine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        np.save(tmp / "logprobs.npy", np.concatenate([r.astype(np.float16) for r in rows]))
        np.save(tmp / "tokens.npy", np.asarray(wins, dtype=np.int32))
        (tmp / "meta.json").write_text(json.dumps({**meta, "version": REFERENCE_VERSION}))
        os.replace(tmp, path)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_reference(path: Path) -> Reference:
    """Raise FileNotFoundError when the entry is absent (another machine, a cleared cache)."""
    meta = json.loads((path / "meta.json").read_text())
    logprobs = np.load(path / "logprobs.npy", mmap_mode="r")
    wins = np.load(path / "tokens.npy")
    return Reference(key=path.name, logprobs=logprobs, windows=wins, meta=meta)

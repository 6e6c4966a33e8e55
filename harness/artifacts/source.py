"""The model source a cell starts from: located, validated and hashed once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts.cache import ArtifactCache, locate_source, sha256_path
from harness.artifacts.gguf_file import InvalidGGUFError, TensorTable, read_table
from harness.config.errors import UserError
from harness.config.schema import HarnessConfig


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    sha256: str
    # the GGUF tensor table; None for an HF checkpoint directory, or when not read (yet)
    table: TensorTable | None = None

    @property
    def is_checkpoint_dir(self) -> bool:
        return self.path.is_dir()

    def to_json(self) -> dict[str, Any]:
        """Path and hash (the table is re-read where it is needed)."""
        return {"path": str(self.path), "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(Path(data["path"]), str(data["sha256"]))


_sources: dict[tuple[str, str], Source] = {}


def usable_cache(cache_dir: str) -> ArtifactCache:
    """The artifact cache at ``cache_dir``, created, or one line on why it cannot be."""
    cache = ArtifactCache(Path(cache_dir))
    try:
        cache.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"run.cache_dir={cache_dir}: cannot create it ({e.strerror})") from None
    if not os.access(cache.root, os.W_OK | os.X_OK):
        raise UserError(f"run.cache_dir={cache_dir}: {cache.root} is not writable")
    return cache


def source_of(config: HarnessConfig) -> Source:
    """Locate, validate and hash the model source (remembered per process and path)."""
    if config.model.source is None:
        raise UserError(
            f"model {config.model.name} has no source (it is known by its architecture only); "
            "plan it with plan=true, or set model.source.path to its checkpoint to run it"
        )
    path = locate_source(config.model.source)
    memo = (str(path), config.run.cache_dir)
    if memo not in _sources:
        table = None
        if not path.is_dir():
            try:
                table = read_table(path)
            except InvalidGGUFError as e:
                raise UserError(f"model {config.model.name}: {e}") from None
        cache = usable_cache(config.run.cache_dir)
        _sources[memo] = Source(path, sha256_path(path, cache.hash_index), table)
    return _sources[memo]

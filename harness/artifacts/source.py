"""The model source a cell starts from: located, validated and hashed once per process."""

from __future__ import annotations

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
        cache = ArtifactCache(Path(config.run.cache_dir))
        cache.root.mkdir(parents=True, exist_ok=True)
        _sources[memo] = Source(path, sha256_path(path, cache.hash_index), table)
    return _sources[memo]

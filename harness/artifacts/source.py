"""The model source a cell starts from: chosen (harness/artifacts/checkpoints.py), located
(a local file or directory, a packaged file, or a Hub checkpoint resolved to its commit),
validated and identified once per process. A local source is identified by its content hash;
a Hub checkpoint by its commit and file patterns (``Resolved.key``), before it is downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts.cache import ArtifactCache, locate_source, sha256_path
from harness.artifacts.checkpoints import Choice, NoCheckpoint, choose
from harness.artifacts.gguf_file import InvalidGGUFError, TensorTable, read_table
from harness.artifacts.hub import Resolved, check_gguf, resolve
from harness.config.errors import UserError
from harness.config.schema import HarnessConfig, ModelSource

__all__ = ["NoCheckpoint", "Source", "checkpoint_of", "source_of", "usable_cache"]


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    sha256: str
    # the GGUF tensor table; None for an HF checkpoint directory, or when not read (yet)
    table: TensorTable | None = None
    hub: Resolved | None = None  # a Hub checkpoint (downloaded in the prepare step if missing)
    where: str = "model.source"  # the config entry it came from, for messages

    @property
    def is_checkpoint_dir(self) -> bool:
        return self.path.is_dir()

    @property
    def label(self) -> str:
        """``repo@revision`` for a Hub checkpoint, else the local path."""
        if self.hub is None:
            return str(self.path)
        return f"{self.hub.repo}@{self.hub.revision}"

    def to_json(self) -> dict[str, Any]:
        """Path, identity and Hub resolution (the table is re-read where it is needed)."""
        hub = self.hub.to_json() if self.hub else None
        return {"path": str(self.path), "sha256": self.sha256, "hub": hub, "where": self.where}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        hub = Resolved.from_json(data["hub"]) if data.get("hub") else None
        where = str(data.get("where", "model.source"))
        return cls(Path(data["path"]), str(data["sha256"]), hub=hub, where=where)


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


def checkpoint_of(config: HarnessConfig) -> Choice:
    """The checkpoint entry this cell starts from (NoCheckpoint when it has none)."""
    fmt = config.runtime.model_format()
    if fmt is None:  # a server the harness did not launch loads its own model
        return Choice("source", None, ())
    return choose(config.model, config.method.name, config.precision.name, fmt)


def source_of(config: HarnessConfig, choice: Choice | None = None) -> Source:
    """Locate, validate and identify the cell's source (remembered per process and path).
    Raises NoCheckpoint, UserError, or HubUnavailable (a Hub checkpoint not to be had now)."""
    choice = choice or checkpoint_of(config)
    spec = choice.spec
    if spec is not None and spec.path is None:
        assert spec.repo is not None
        resolved = resolve(spec.repo, spec.revision, choice.patterns, choice.where)
        if spec.files:
            check_gguf(resolved, choice.where)
        return _hub_source(resolved, choice.where, config.model.name)
    if spec is not None:
        return _local(ModelSource(path=spec.path), config, choice.where)
    if config.model.source is None:
        raise UserError(
            f"model {config.model.name} has no source (it is known by its architecture only); "
            "plan it with plan=true, or set model.source.path to its checkpoint to run it"
        )
    return _local(config.model.source, config, "model.source")


def _hub_source(resolved: Resolved, where: str, model: str) -> Source:
    path = resolved.load_path()
    table = None
    if resolved.complete and path.is_file():
        try:
            table = read_table(path)
        except InvalidGGUFError as e:
            raise UserError(f"{where} ({model}): {e}") from None
    return Source(path, resolved.key, table, resolved, where)


def _local(source: ModelSource, config: HarnessConfig, where: str) -> Source:
    path = locate_source(source, where)
    memo = (str(path), config.run.cache_dir)
    if memo not in _sources:
        table = None
        if not path.is_dir():
            try:
                table = read_table(path)
            except InvalidGGUFError as e:
                raise UserError(f"model {config.model.name}: {e}") from None
        cache = usable_cache(config.run.cache_dir)
        sha = sha256_path(path, cache.hash_index)
        _sources[memo] = Source(path, sha, table, where=where)
    return _sources[memo]

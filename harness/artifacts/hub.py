"""Checkpoints on the Hugging Face Hub, through ``huggingface_hub`` and its standard cache.

``resolve`` turns ``repo@revision`` and the file patterns a cell needs into a commit and a file
list without downloading anything: online with a dry run of ``snapshot_download`` (sizes, and
which files the cache already holds), offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable)
from the cache's ``refs/`` and ``snapshots/``. ``download`` fetches what is missing, once per
checkpoint: files already in the cache are not fetched again, so every cell that shares the
checkpoint shares the download. The token (``HF_TOKEN`` or the Hub's own login) is read by
``huggingface_hub`` from the environment; this module never sees it, logs it or records it.

Every failure the user can fix is one line naming the repo and what to do: ``UserError`` when
the configuration itself is wrong (no such repo, revision or file; a gated repo), ``HubUnavailable``
when this machine cannot get it now (offline and not cached, the Hub down, the disk full).
"""

from __future__ import annotations

import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts.cache import content_key
from harness.config.errors import UserError

# What a checkpoint directory needs: weights, configs, tokenizer. Pickled weights (*.bin,
# *.pth) and the repo's own Python code are never fetched.
DIR_PATTERNS = (
    "*.safetensors",
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "*.jinja",
)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


class HubUnavailable(Exception):
    """The checkpoint cannot be had on this machine now (not a configuration error)."""


@dataclass(frozen=True, slots=True)
class HubFile:
    name: str  # path inside the repo
    size: int | None  # bytes; None when the Hub was not asked (offline)
    cached: bool


@dataclass(frozen=True, slots=True)
class Resolved:
    """A Hub checkpoint pinned to a commit: what a cell loads and where it lives."""

    repo: str
    revision: str  # as configured (a branch, tag or commit)
    commit: str  # what it resolved to
    patterns: tuple[str, ...]
    files: tuple[HubFile, ...]
    snapshot: str  # the cache's snapshot directory of that commit
    online: bool  # False: resolved from the local cache alone

    @property
    def key(self) -> str:
        """The checkpoint's identity: its commit and the files taken from it (git hashes
        every file into the commit, so no content hash is needed)."""
        return content_key("hub", self.repo, self.commit, *self.patterns)

    @property
    def total_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s)

    @property
    def missing_bytes(self) -> int | None:
        """Bytes still to download; None when unknown (offline, with files missing)."""
        missing = [f for f in self.files if not f.cached]
        if not missing:
            return 0
        sizes = [f.size for f in missing]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s)

    @property
    def complete(self) -> bool:
        return all(f.cached for f in self.files)

    def on_disk(self) -> bool:
        """Every file is in the snapshot directory now (whatever the plan saw)."""
        return all((Path(self.snapshot) / f.name).is_file() for f in self.files)

    def load_path(self) -> Path:
        """The directory, or for a GGUF checkpoint its (first) file: llama.cpp finds the
        other parts of a split file next to the first."""
        gguf = sorted(f.name for f in self.files if f.name.endswith(".gguf"))
        return Path(self.snapshot) / gguf[0] if gguf else Path(self.snapshot)

    def tags(self) -> dict[str, str]:
        total = self.total_bytes
        return {
            "checkpoint.repo": self.repo,
            "checkpoint.revision": self.revision,
            "checkpoint.commit": self.commit,
            "checkpoint.files": ",".join(f.name for f in self.files)[:5000],
            "checkpoint.file_count": str(len(self.files)),
            "checkpoint.bytes": str(total) if total is not None else "unknown",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "patterns": list(self.patterns),
            "files": [[f.name, f.size, f.cached] for f in self.files],
            "snapshot": self.snapshot,
            "online": self.online,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resolved:
        return cls(
            data["repo"],
            data["revision"],
            data["commit"],
            tuple(data["patterns"]),
            tuple(HubFile(str(n), s, bool(c)) for n, s, c in data["files"]),
            data["snapshot"],
            bool(data["online"]),
        )


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_resolved: dict[tuple[str, str, tuple[str, ...]], Resolved] = {}


def _quiet() -> None:
    """The Hub client's warnings (e.g. no file matched) are said here in one line instead;
    its download progress bars stay."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def resolve(repo: str, revision: str, patterns: tuple[str, ...], where: str) -> Resolved:
    """The checkpoint's commit and files (remembered per process). ``where`` names the config
    entry in messages, e.g. ``model.checkpoints.awq``."""
    _quiet()
    memo = (repo, revision, patterns)
    if memo not in _resolved:
        found = None if offline() else _resolve_online(repo, revision, patterns, where)
        _resolved[memo] = found or _resolve_cached(repo, revision, patterns, where)
    return _resolved[memo]


def _resolve_online(
    repo: str, revision: str, patterns: tuple[str, ...], where: str
) -> Resolved | None:
    """Through the Hub; None when the Hub cannot be reached (the cache is tried next)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        infos = snapshot_download(
            repo,
            revision=revision,
            allow_patterns=list(patterns),
            dry_run=True,
            tqdm_class=_silent_tqdm(),  # nothing moves in a dry run: no progress bar
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        # a dry run wraps what went wrong (DryRunError from the real cause): look through it
        for error in (e, e.__cause__, e.__context__):
            if error is not None:
                _refuse(error, repo, revision, where)
        return None  # unreachable, or the Hub failed: the cache may still hold it
    assert isinstance(infos, list)
    files = tuple(sorted((HubFile(i.filename, i.file_size, i.is_cached) for i in infos), key=_name))
    if not files:
        raise UserError(f"{where}: no file of {repo}@{revision} matches {', '.join(patterns)}")
    commit = infos[0].commit_hash
    snapshot = cache_root() / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    return Resolved(repo, revision, commit, patterns, files, str(snapshot), True)


def _resolve_cached(repo: str, revision: str, patterns: tuple[str, ...], where: str) -> Resolved:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.utils._paths import filter_repo_objects

    why = "HF_HUB_OFFLINE=1" if offline() else "the Hub is unreachable"
    try:
        folder = Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        raise HubUnavailable(
            f"{where}: {repo}@{revision} is not in the Hub cache ({cache_root()}) and {why}; "
            "download it where the Hub is reachable (or mount that cache)"
        ) from None
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    chosen = list(filter_repo_objects(names, allow_patterns=list(patterns)))
    if not chosen:
        raise HubUnavailable(
            f"{where}: the Hub cache holds {repo}@{revision} but no file matching "
            f"{', '.join(patterns)}, and {why}"
        )
    files = tuple(HubFile(n, (folder / n).stat().st_size, True) for n in chosen)
    return Resolved(repo, revision, folder.name, patterns, files, str(folder), False)


def _silent_tqdm() -> Any:
    from huggingface_hub.utils.tqdm import tqdm

    class Silent(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})  # type: ignore[no-untyped-call]

    return Silent


def _refuse(error: BaseException, repo: str, revision: str, where: str) -> None:
    """UserError for what the Hub says is wrong with the configuration; else nothing."""
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):  # (a RepositoryNotFoundError too: first)
        raise UserError(_gated(repo, where)) from None
    if isinstance(error, RevisionNotFoundError):
        raise UserError(
            f"{where}.revision={revision}: {repo} has no such branch, tag or commit"
        ) from None
    if isinstance(error, RepositoryNotFoundError):
        raise UserError(
            f"{where}.repo={repo}: no such model on the Hub, or it is private (set HF_TOKEN "
            "to a token that can read it)"
        ) from None


def _name(f: HubFile) -> str:
    return f.name


def _gated(repo: str, where: str) -> str:
    return (
        f"{where}.repo={repo} is gated: accept its license at https://huggingface.co/{repo} "
        "and set HF_TOKEN (or run `hf auth login`) with an account that has access"
    )


def check_gguf(resolved: Resolved, where: str) -> None:
    """A GGUF pattern must name one quantization: one file, or every part of one split file."""
    stems = {_SPLIT.sub("", f.name) for f in resolved.files}
    if len(stems) > 1:
        listed = ", ".join(sorted(f.name for f in resolved.files)[:6])
        raise UserError(f"{where}: the pattern matches several files ({listed}); name one")
    parts = [m for f in resolved.files if (m := _SPLIT.search(f.name))]
    if parts and len(parts) != int(parts[0].group(2)):
        raise UserError(
            f"{where}: {len(parts)} of the {int(parts[0].group(2))} parts of "
            f"{sorted(stems)[0]} match; the pattern must take every part"
        )


def free_bytes(path: Path | None = None) -> int:
    """Free bytes on the disk that holds ``path`` (the Hub cache by default)."""
    path = path or cache_root()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def download(resolved: Resolved, where: str) -> Path:
    """Fetch what the cache lacks (with huggingface_hub's progress bar); the load path."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    _quiet()
    need = resolved.missing_bytes
    if need and need > free_bytes():
        raise HubUnavailable(
            f"{where}: {resolved.repo} needs {need / 2**30:.1f} GiB more in the Hub cache "
            f"({cache_root()}) but the disk has {free_bytes() / 2**30:.1f} GiB free; free space "
            "or point HF_HUB_CACHE at a bigger disk"
        )
    try:
        snapshot_download(
            resolved.repo, revision=resolved.commit, allow_patterns=list(resolved.patterns)
        )
    except GatedRepoError:
        raise UserError(_gated(resolved.repo, where)) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise HubUnavailable(
                f"{where}: the disk of the Hub cache ({cache_root()}) filled up while "
                f"downloading {resolved.repo}; free space or point HF_HUB_CACHE elsewhere"
            ) from None
        raise HubUnavailable(f"{where}: downloading {resolved.repo} failed: {e}") from None
    except (LocalEntryNotFoundError, HfHubHTTPError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HubUnavailable(f"{where}: downloading {resolved.repo} failed: {first}") from None
    return resolved.load_path()

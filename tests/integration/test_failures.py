"""A cell that crashes, hangs or raises is recorded as failed; the sweep goes on."""

from pathlib import Path

from tests.conftest import HarnessRun, mlflow_runs
from tests.integration.test_fake_sweep import children, sweep


def test_failure_isolation(harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path) -> None:
    r = sweep(
        harness_cli,
        tiny_gguf,
        "runtime.ttft_s=0.001",
        "runtime.fault=none,segfault,hang,error",
        "run.timeout_s=4",
    )
    assert r.returncode == 1  # some cell failed
    cells = {c.data.params["runtime.fault"]: c for c in children(mlflow_runs(tmp_path))}
    assert set(cells) == {"none", "segfault", "hang", "error"}
    assert cells["none"].info.status == "FINISHED"
    assert cells["none"].data.tags["harness.status"] == "ok"
    for fault in ("segfault", "hang", "error"):
        assert cells[fault].info.status == "FAILED"
        assert cells[fault].data.tags["harness.status"] == "failed"
    assert cells["segfault"].data.tags["harness.reason"] == "measurement worker crashed (SIGSEGV)"
    assert "Segmentation fault" in cells["segfault"].data.tags["harness.error_tail"]
    assert cells["hang"].data.tags["harness.reason"] == (
        "measurement worker timed out after 4 s and was killed"
    )
    assert (
        cells["error"]
        .data.tags["harness.reason"]
        .startswith("6 of 6 requests failed: RuntimeError: injected failure in stream()")
    )
    # the summary lists every cell, the parent run says the sweep failed
    assert r.stdout.count("| failed") == 3 and r.stdout.count("| ok") == 1
    (parent,) = children(mlflow_runs(tmp_path), "sweep")
    assert parent.info.status == "FAILED"


def test_failed_cells_run_again_on_resume(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    args = ("runtime.ttft_s=0.001", "runtime.fault=none,error")
    assert sweep(harness_cli, tiny_gguf, *args).returncode == 1
    again = sweep(harness_cli, tiny_gguf, *args)
    assert again.returncode == 1
    assert "1 to run, 1 already done" in again.stderr
    statuses = sorted(c.data.tags["harness.status"] for c in children(mlflow_runs(tmp_path)))
    assert statuses == ["failed", "failed", "ok"]


def test_a_gpu_cell_on_a_machine_without_gpu_fails_instead_of_measuring_the_cpu(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    from tests.conftest import fake_cell, has_gpu

    if has_gpu():
        return  # the check only bites where NVML finds no GPU
    r = harness_cli(*fake_cell(tiny_gguf), "hardware.device=cuda")
    assert r.returncode == 1
    (cell,) = children(mlflow_runs(tmp_path))
    assert cell.data.tags["harness.status"] == "failed"
    assert "hardware.device=cuda but this machine has no GPU" in cell.data.tags["harness.reason"]
    assert "output_throughput_tok_s" not in cell.data.metrics

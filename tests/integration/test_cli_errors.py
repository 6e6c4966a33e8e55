"""Bad input: one line on stderr naming the value, exit code 2, no traceback, nothing lost."""

from pathlib import Path

import pytest

from tests.conftest import HarnessRun, fake_cell, mlflow_runs


def assert_one_line_error(r, *fragments: str) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Error executing job" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_unknown_precision(harness_cli: HarnessRun) -> None:
    line = assert_one_line_error(harness_cli("precision=q9_k"), "precision=q9_k", "q4_k_m")
    assert line.startswith("harness: error: precision=q9_k is not a valid choice; choose one of:")


def test_unknown_sweep(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("+sweep=70b"), "+sweep=70b", "135m_gguf")


def test_sweep_without_plus(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("sweep=135m_gguf"), "+sweep=135m_gguf")


def test_malformed_override(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("precision=[q4"), "malformed override 'precision=[q4'")


def test_sweep_value_without_multirun(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("precision=q4_k_m,q8_0"), "precision=q4_k_m,q8_0", "-m")


def test_missing_model_file(harness_cli: HarnessRun) -> None:
    assert_one_line_error(
        harness_cli("model.source.path=/no/such/model.gguf"),
        "model.source.path=/no/such/model.gguf: no such file",
    )


def test_corrupt_gguf(harness_cli: HarnessRun, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    assert_one_line_error(harness_cli(f"model.source.path={bad}"), str(bad), "corrupt GGUF")


def test_bad_value_type(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("workload.repetitions=three"), "workload.repetitions=three")


def test_invalid_value(harness_cli: HarnessRun) -> None:
    assert_one_line_error(
        harness_cli("workload.repetitions=0"), "workload.repetitions=0 must be >= 1"
    )


def test_unwritable_tracking_location(harness_cli: HarnessRun, tiny_gguf: Path) -> None:
    r = harness_cli(*fake_cell(tiny_gguf), "tracking.uri=sqlite:////proc/1/mlflow.db")
    assert_one_line_error(r, "tracking.uri=sqlite:////proc/1/mlflow.db", "not writable")


def test_unreachable_server(harness_cli: HarnessRun, tiny_gguf: Path) -> None:
    r = harness_cli(*fake_cell(tiny_gguf), "tracking=server", "tracking.uri=http://127.0.0.1:9")
    assert_one_line_error(r, "tracking.uri=http://127.0.0.1:9", "unreachable")


def test_server_without_uri(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("tracking=server"), "tracking.uri")


def test_credentials_never_printed(harness_cli: HarnessRun, tiny_gguf: Path) -> None:
    r = harness_cli(
        *fake_cell(tiny_gguf), "tracking=server", "tracking.uri=http://bob:s3cret@127.0.0.1:9"
    )
    assert "s3cret" not in r.stderr + r.stdout
    assert_one_line_error(r, "tracking.uri=http://127.0.0.1:9: MLflow server unreachable")


@pytest.mark.parametrize("bad", ["precision=q9_k", "+sweep=nope"])
def test_finished_cells_survive_a_bad_command(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path, bad: str
) -> None:
    assert harness_cli(*fake_cell(tiny_gguf)).returncode == 0
    before = {r.info.run_id for r in mlflow_runs(tmp_path)}
    assert harness_cli(*fake_cell(tiny_gguf), bad).returncode == 2
    assert {r.info.run_id for r in mlflow_runs(tmp_path)} == before


def test_negative_timeout_names_the_field(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("run.timeout_s=-1"), "run.timeout_s=-1.0 must be > 0")


def test_unknown_load_mode_lists_the_choices(harness_cli: HarnessRun) -> None:
    assert_one_line_error(harness_cli("workload.mode=warp"), "warp", "closed_loop", "rate_sweep")

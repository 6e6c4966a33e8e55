"""The orchestrator end to end with the FakeRunner, checked through MLflow's client."""

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from harness import compare_runs
from harness.metrics import names
from harness.results.events import read_log
from tests.conftest import HarnessRun, mlflow_runs

SWEEP = "+sweep=fake_matrix"


def children(runs: list, kind: str = "cell") -> list:
    return [r for r in runs if r.data.tags.get("harness.kind") == kind]


def sweep(harness_cli: HarnessRun, tiny: Path, *extra: str):
    return harness_cli(SWEEP, f"model.source.path={tiny}", *extra)


def test_sweep_records_parent_and_children(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = sweep(harness_cli, tiny_gguf)
    assert r.returncode == 0, r.stderr
    runs = mlflow_runs(tmp_path)
    (parent,) = children(runs, "sweep")
    cells = children(runs)
    assert len(cells) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in cells} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["harness.sweep_name"] == "fake_matrix"
    assert len({c.data.tags["harness.cell_key"] for c in cells}) == 4
    # planned once, in the sweeper: each job ran the planned cell written for it
    plans = sorted(tmp_path.glob("outputs/sweeps/*/*/cells/*.json"))
    assert sorted(json.loads(p.read_text())["cell"]["key"] for p in plans) == sorted(
        c.data.tags["harness.cell_key"] for c in cells
    )
    assert sorted(c.data.params["runtime.ttft_s"] for c in cells) == [
        "0.001",
        "0.002",
        "0.003",
        "0.004",
    ]
    for c in cells:
        tags, params, metrics = c.data.tags, c.data.params, c.data.metrics
        assert c.info.status == "FINISHED"
        assert tags["harness.status"] == "ok"
        assert tags["harness.synthetic"] == "true"
        assert tags["harness.sweep_id"] == parent.data.tags["harness.sweep_id"]
        assert tags["harness.choice.runtime"] == "fake"
        for key in (
            "git.commit",
            "git.dirty",
            "host.name",
            "cpu.model",
            "python.version",
            "pkg.mlflow",
            "pkg.hydra-core",
            "runtime.fake",
            "artifact.sha256",
            "gpu.absent",
        ):
            assert tags[key], key
        assert tags["absent.gpu_peak_used_bytes"].startswith("no GPU")
        assert tags["absent.cpu_energy_j"].startswith("RAPL")  # no powercap on these VMs
        assert tags["harness.validity"] == "VALID"
        assert tags["harness.estimator_version"] == "2"
        assert tags["price.snapshot"] and tags["price.source"]
        assert params["workload.max_new_tokens"] == "8"
        assert params["model.source.path"] == str(tiny_gguf)
        assert metrics["requests"] == 6  # 2 prompts x 3 measured repetitions
        assert metrics["output_tokens"] == 48
        assert metrics["model_params"] == 2112
        assert metrics["ttft_p50_s"] > 0 and metrics["peak_rss_bytes"] > 0
        assert metrics["peak_tree_rss_bytes"] > 0
        assert metrics["output_throughput_tok_s_ci95_lo"] < metrics["output_throughput_tok_s"]
        assert metrics["cost_per_1m_output_tokens_usd"] > 0
        # every recorded name has its one definition in the table (harness/metrics/names.py)
        assert [k for k in metrics if names.resolve(k) is None] == []
        assert [k for k in tags if not k.startswith("mlflow.") and not names.is_tag(k)] == []
        assert tags[names.RECORD_SCHEMA] == "1"


def test_per_repetition_steps_and_artifacts(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    assert sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001").returncode == 0
    (cell,) = children(mlflow_runs(tmp_path))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(cell.info.run_id, "rep.output_throughput_tok_s")
    assert sorted(m.step for m in history) == [0, 1, 2]
    mean = sum(m.value for m in history) / 3
    assert abs(cell.data.metrics["output_throughput_tok_s"] - mean) < 1e-6 * mean
    listed = {a.path for a in client.list_artifacts(cell.info.run_id)}
    assert {
        "cell.json",
        "config.yaml",
        "result.json",
        "events",
        "resources.jsonl",
        "environment.json",
        "run.log",
    } <= listed
    local = Path(client.download_artifacts(cell.info.run_id, "events", str(tmp_path)))
    infos, records = read_log(local.parent)
    assert [(i.phase, i.repetition) for i in infos] == [
        ("warmup", 0),
        ("measure", 0),
        ("measure", 1),
        ("measure", 2),
    ]
    assert len(records) == 8  # (1 warmup + 3 measured) x 2 prompts, warmup kept apart
    assert [r.phase for r in records].count("warmup") == 2
    assert all(len(r.chunk_ns) == 8 for r in records)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    same = compare_runs(
        uri, cell.info.run_id, cell.info.run_id, "output_throughput_tok_s", higher_is_better=True
    )
    assert same.n_a == 3 and same.ratio == 1.0 and same.verdict == "no significant difference"


def test_rerun_skips_finished_cells(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    assert sweep(harness_cli, tiny_gguf).returncode == 0
    again = sweep(harness_cli, tiny_gguf)
    assert again.returncode == 0
    assert "0 to run, 4 already done" in again.stderr
    assert again.stdout.count("| cached") == 4
    runs = mlflow_runs(tmp_path)
    assert len(children(runs)) == 4 and len(children(runs, "sweep")) == 1


def test_force_runs_again(harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path) -> None:
    assert sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001").returncode == 0
    assert sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001", "run.force=true").returncode == 0
    assert len(children(mlflow_runs(tmp_path))) == 2


def test_incompatible_cells_are_recorded_as_skipped(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001", "precision=native,q4_k_m")
    assert r.returncode == 0, r.stderr
    by_status = {c.data.tags["harness.status"]: c for c in children(mlflow_runs(tmp_path))}
    assert set(by_status) == {"ok", "skipped"}
    assert by_status["skipped"].data.tags["harness.reason"] == (
        "method none cannot produce precision q4_k_m (it produces: bf16, f16, f32, native)"
    )
    assert not by_status["skipped"].data.metrics
    again = sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001", "precision=native,q4_k_m")
    assert len(children(mlflow_runs(tmp_path))) == 2 and again.returncode == 0


def test_short_generation_is_invalid_not_ok(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = sweep(harness_cli, tiny_gguf, "runtime.ttft_s=0.001", "runtime.short_by=2")
    assert r.returncode == 0
    (cell,) = children(mlflow_runs(tmp_path))
    assert cell.data.tags["harness.status"] == "invalid"
    assert "6 of 6 requests did not produce the forced length" in cell.data.tags["harness.reason"]
    assert "6 of 8 tokens" in cell.data.tags["harness.reason"]


def test_single_run_is_a_sweep_of_one(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    from tests.conftest import fake_cell

    r = harness_cli(*fake_cell(tiny_gguf))
    assert r.returncode == 0, r.stderr
    runs = mlflow_runs(tmp_path)
    assert len(children(runs)) == 1 and len(children(runs, "sweep")) == 1
    assert "| ok (synthetic)" in r.stdout

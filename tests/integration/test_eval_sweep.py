"""The quality gate's wiring end to end with the FakeRunner, checked through MLflow's client:
baseline first, variant fetches its items and reference rows, scorecard and lineage logged."""

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from harness.quality.suites import load_suite
from tests.conftest import HarnessRun, fake_cell, mlflow_runs

SWEEP = "+sweep=fake_eval"


def cells(tmp_path: Path) -> dict[str, object]:
    """Cell runs by their runtime.logit_noise / runtime.fault params."""
    out = {}
    for run in mlflow_runs(tmp_path):
        if run.data.tags.get("harness.kind") == "cell":
            p = run.data.params
            out[f"{p['runtime.logit_noise']}/{p['runtime.fault']}"] = run
    return out


def test_baseline_runs_first_and_the_variant_is_gated(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = harness_cli(SWEEP, f"model.source.path={tiny_gguf}")
    assert r.returncode == 0, r.stderr
    # the sweep lists the variant (noise 0.5) first? no: 0.0 first in params, and baselines run
    # first whatever the order; check the progress lines
    lines = [x for x in r.stderr.splitlines() if "running" in x]
    assert "logit_noise=0.0" in lines[0] and "logit_noise=0.5" in lines[1]
    runs = cells(tmp_path)
    base, variant = runs["0.0/none"], runs["0.5/none"]
    bt, vt = base.data.tags, variant.data.tags
    assert bt["quality.role"] == "baseline" and "quality.verdict" not in bt
    assert bt["absent.fidelity.kld_mean"] == "this cell is the baseline (its own reference)"
    assert vt["quality.role"] == "variant"
    assert vt["quality.baseline_run_id"] == base.info.run_id
    assert vt["quality.baseline_cell_key"] == bt["harness.cell_key"]
    assert vt["quality.reference_key"] == bt["quality.reference_key"]
    assert vt["quality.verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    suite = load_suite("core", "smoke")
    for name in suite.slices:
        assert vt[f"quality.verdict.{name}"] in ("PASS", "FAIL", "INCONCLUSIVE")
        assert variant.data.metrics[f"quality.{name}.paired_n"] == (4 if "multiple" in name else 3)
    vm = variant.data.metrics
    assert vm["fidelity.kld_mean"] > 0.01 and vm["fidelity.top1_agreement"] < 1.0
    assert vm["fidelity.n_tokens"] == 2 * 31  # two 64-token windows, second halves scored
    assert vm["quality.corpus_ppl"] == vm["fidelity.ppl_variant"]
    assert base.data.metrics["quality.corpus_ppl"] == vm["fidelity.ppl_base"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    files = {f.path for f in client.list_artifacts(variant.info.run_id, "eval")}
    assert {"eval/items.jsonl", "eval/scorecard.md", "eval/scorecard.json"} <= files
    assert {"eval/fidelity.json", "eval/fidelity_tokens.npz", "eval/settings.json"} <= files
    (lineage,) = variant.inputs.dataset_inputs
    assert lineage.dataset.name == "core@1"
    assert suite.manifest_sha256.startswith(lineage.dataset.digest)
    assert [t.value for t in lineage.tags] == ["eval"]
    assert "| baseline |" in r.stdout and vt["quality.verdict"] in r.stdout


def test_variant_alone_uses_the_baseline_in_mlflow(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    alone = [*fake_cell(tiny_gguf), "eval=smoke", "runtime.logit_noise=0.3"]
    alone += ["+eval.baseline={precision: null, runtime: {logit_noise: '0.0'}}", "eval.items=3"]
    alone += ["eval.window_tokens=64", "eval.items_per_slice.multiple_choice=4"]
    missing = harness_cli(*alone)
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()
    assert line.startswith("harness: error: eval.baseline (runtime.logit_noise=0.0) of cell ")
    assert "has no finished run" in line and "add runtime.logit_noise=0.0 to the sweep" in line
    base = [*fake_cell(tiny_gguf), "eval=smoke", "runtime.logit_noise=0.0"]
    base += alone[-4:]
    assert harness_cli(*base).returncode == 0
    r = harness_cli(*alone)
    assert r.returncode == 0, r.stderr
    runs = cells(tmp_path)
    baseline, variant = runs["0.0/none"], runs["0.3/none"]
    assert variant.data.tags["quality.baseline_run_id"] == baseline.info.run_id
    assert variant.data.metrics["fidelity.kld_mean"] > 0


def test_failed_baseline_leaves_the_variant_inconclusive(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = harness_cli(
        SWEEP,
        f"model.source.path={tiny_gguf}",
        "runtime.logit_noise=0.0",
        "runtime.fault=error,none",
        "+eval.baseline={runtime: {fault: error}}",
    )
    assert r.returncode == 1  # the baseline cell failed; the sweep went on
    runs = cells(tmp_path)
    assert runs["0.0/error"].data.tags["harness.status"] == "failed"
    tags = runs["0.0/none"].data.tags
    assert tags["harness.status"] == "ok"
    assert tags["quality.verdict"] == "INCONCLUSIVE"
    assert "has no finished run" in tags["quality.reason"]
    assert "has no finished run" in tags["absent.fidelity.kld_mean"]


def test_eval_config_errors_are_one_line(harness_cli: HarnessRun, tiny_gguf: Path) -> None:
    cases = {
        "+eval.gates={arithmetc: {max_drop: 0.02}}": "eval.gates names unknown slice 'arithmetc'",
        "eval.metric.json=lenient": "eval.metric.json=lenient is not a score of json",
        "eval.gate.max_drop=2": "max_drop=2.0 must be a fraction",
        "eval.baseline={precision: f17}": "eval.baseline: precision=f17 is not a valid choice",
    }
    for override, expected in cases.items():
        r = harness_cli(*fake_cell(tiny_gguf), "eval=smoke", override)
        assert r.returncode == 2, override
        (line,) = r.stderr.strip().splitlines()
        assert expected in line, line
    r = harness_cli(*fake_cell(tiny_gguf), "eval=smoke", "+eval.gates={arithmetc: {max_drop: 0.1}}")
    assert "did you mean 'arithmetic'" in r.stderr
    r = harness_cli(*fake_cell(tiny_gguf), "eval=smoke", "eval.gates.arithmetc.max_drop=0.02")
    assert r.returncode == 2 and "Key 'arithmetc' is not in struct" in r.stderr


def test_items_file_keeps_every_output(
    harness_cli: HarnessRun, tiny_gguf: Path, tmp_path: Path
) -> None:
    r = harness_cli(SWEEP, f"model.source.path={tiny_gguf}", "runtime.logit_noise=0.0")
    assert r.returncode == 0, r.stderr
    (cell_dir,) = list((tmp_path / "outputs").rglob("eval"))
    rows = [json.loads(x) for x in (cell_dir / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3 + 4
    generated = [x for x in rows if x["slice"] != "multiple_choice"]
    assert {x["output"] for x in generated} == {"#### 0"}
    assert all(x["finish"] == "stop" and x["output_tokens"] == 2 for x in generated)
    choices = [x for x in rows if x["slice"] == "multiple_choice"]
    assert all(len(x["choice_logprobs"]) == 4 for x in choices)

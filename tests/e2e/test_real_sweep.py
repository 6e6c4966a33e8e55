"""Two real cells of the 135m_gguf sweep on the real model, through the real CLI and MLflow."""

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import HarnessRun, mlflow_runs
from tests.integration.test_fake_sweep import children

pytestmark = pytest.mark.slow
ARGS = ("+sweep=135m_gguf", "precision=f16,q8_0", "workload=tiny")


def test_two_cell_real_sweep(harness_cli: HarnessRun, model_cache: Path, tmp_path: Path) -> None:
    # -X importtime lists every module the parent imports (workers log theirs to run.log)
    r = harness_cli(*ARGS, cache_dir=model_cache, timeout=900, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.returncode == 0, r.stderr + r.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "mlflow" in imported and "harness.sweep.orchestrator" in imported
    assert not {m for m in imported if m.split(".")[0] == "llama_cpp"}, (
        "the parent imported llama_cpp"
    )
    runs = mlflow_runs(tmp_path)
    (parent,) = children(runs, "sweep")
    cells = {c.data.tags["harness.choice.precision"]: c for c in children(runs)}
    assert set(cells) == {"f16", "q8_0"}
    for precision, c in cells.items():
        m, tags = c.data.metrics, c.data.tags
        assert c.info.status == "FINISHED" and tags["harness.status"] == "ok", tags.get(
            "harness.reason"
        )
        assert "harness.synthetic" not in tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["runtime.llama_cpp_python"] == "0.3.36"
        assert tags["pkg.llama-cpp-python"] == "0.3.36"
        assert m["output_tokens"] == 2 * 8 * 3  # forced length met on every request
        assert m["output_throughput_tok_s"] > 0 and m["ttft_p50_s"] > 0 and m["itl_p90_s"] > 0
        # 6 requests are too few for a TTFT p95: absent with the reason, never a number
        assert tags["absent.ttft_p95_s"] == "6 samples, p95 needs >= 59"
        assert m["e2e_p50_s"] >= m["ttft_p50_s"]
        assert tags["harness.validity"] == "VALID"
        # harness clock vs llama.cpp's own decode counters, repetition by repetition
        assert 0.9 < m["decode_fidelity_ratio"] < 1.1
        assert m["peak_rss_bytes"] > m["model_file_bytes"] * 0.5
        assert m["load_time_s"] > 0
        assert m["model_params"] == 134515008
        assert tags["artifact.recipe.precision"] == precision
        # decode reads the file's tensors and the KV cache once per token: well under the
        # bandwidth this host measured (cached per host, so measured once for every cell)
        assert 0.01 < m["roofline.efficiency"] < 1
        assert m["roofline.peak_bytes_s"] > 1e9
        assert tags["roofline.peak_source"].startswith("measured: numpy float64 sum")
    assert cells["f16"].data.metrics["model_bpw"] == pytest.approx(16.0, abs=0.01)
    assert cells["f16"].data.tags["artifact.recipe.op"] == "dequantize_f16"
    assert cells["q8_0"].data.metrics["model_bpw"] == pytest.approx(8.5, abs=0.02)
    assert cells["q8_0"].data.tags["artifact.recipe.op"] == "llama_model_quantize"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "cells.json",
        "summary.md",
    }

    # the same cell measured again: its file comes from the cache and costs it no build time
    forced = harness_cli(
        ARGS[0], "precision=q8_0", "workload=tiny", "run.force=true", cache_dir=model_cache
    )
    assert forced.returncode == 0, forced.stderr
    first_q8 = cells["q8_0"].info.run_id
    rerun = [
        c
        for c in children(mlflow_runs(tmp_path))
        if c.data.tags["harness.choice.precision"] == "q8_0" and c.info.run_id != first_q8
    ]
    assert len(rerun) == 1 and rerun[0].data.tags["artifact.cache_hit"] == "true"
    assert "artifact_build_s" not in rerun[0].data.metrics

    t0 = time.monotonic()
    again = harness_cli(*ARGS, cache_dir=model_cache)
    assert again.returncode == 0
    assert "0 to run, 2 already done" in again.stderr
    assert len(children(mlflow_runs(tmp_path))) == 3
    print(f"second run: {time.monotonic() - t0:.1f} s")

"""The 135m_runtimes sweep for real: llama.cpp in-process, HF transformers (+ torchao) and a
self-launched llama_cpp.server side by side on the same model, through the CLI and MLflow."""

import json
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from harness.metrics import names
from tests.conftest import HarnessRun, mlflow_runs
from tests.integration.test_fake_sweep import children

pytestmark = pytest.mark.slow
RUNTIME_MODULES = ("llama_cpp", "torch", "transformers", "torchao")


def _servers() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if "llama_cpp.server" in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def test_runtimes_side_by_side(harness_cli: HarnessRun, model_cache: Path, tmp_path: Path) -> None:
    before = {p.pid for p in _servers()}
    r = harness_cli(
        "+sweep=135m_runtimes",
        "workload=tiny",
        cache_dir=model_cache,
        timeout=1500,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in RUNTIME_MODULES}, (
        "the parent imported a runtime"
    )
    assert {p.pid for p in _servers()} <= before, "a launched server outlived its cell"

    runs = mlflow_runs(tmp_path)
    (parent,) = children(runs, "sweep")
    cells = children(runs)
    assert len(cells) == 9
    by_runtime: dict[str, list] = {}
    for c in cells:
        m, tags = c.data.metrics, c.data.tags
        assert tags["harness.status"] == "ok", (c.info.run_name, tags.get("harness.reason"))
        assert tags["harness.validity"] == "VALID"
        assert m["output_tokens"] > 0 and m["output_throughput_tok_s"] > 0
        assert m["ttft_p50_s"] > 0 and m["e2e_p50_s"] >= m["ttft_p50_s"]
        assert c.data.params["gen.chat_template"]
        assert [k for k in m if names.resolve(k) is None] == []  # every name has its definition
        by_runtime.setdefault(tags["runtime.name"], []).append(c)
    assert {k: len(v) for k, v in by_runtime.items()} == {
        "llama_cpp": 2,
        "hf": 4,
        "openai_server": 3,
    }
    for c in by_runtime["hf"]:
        tags = c.data.tags
        assert tags["artifact.recipe.op"] == "gguf_to_hf"
        assert c.data.metrics["model_bpw"] == pytest.approx(16.0, abs=0.01)  # the bf16 file
        assert c.data.metrics["model_params"] == 134515008
        assert tags["pkg.torch"].startswith("2.13.0") and tags["pkg.torchao"]
        if (tags["harness.choice.method"], tags["harness.choice.precision"]) == ("none", "bf16"):
            assert 0.001 < c.data.metrics["roofline.efficiency"] < 1  # the file's own dtype
        else:  # cast or quantized at load: the file's bytes are not what decode reads
            assert tags["absent.roofline.efficiency"].endswith("bytes in memory are not the file's")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for c in by_runtime["openai_server"]:
        m = c.data.metrics
        # the launched server's tree is measured apart from the harness's client
        assert m["server_peak_rss_bytes"] > 100 * 2**20 and m["client_peak_rss_bytes"] > 0
        assert m["server_cpu_cores"] > m["client_cpu_cores"] > 0
        assert c.data.tags["runtime.server.launch"] == "llama_cpp_python"
        assert "server.log" in {a.path for a in client.list_artifacts(c.info.run_id)}
        assert "finish_length" in c.data.tags["harness.flags"]
    assert parent.data.tags["harness.equivalence"]


def test_a_worker_killed_at_its_deadline_leaves_no_server(
    harness_cli: HarnessRun, model_cache: Path, tmp_path: Path
) -> None:
    before = {p.pid for p in _servers()}
    r = harness_cli(
        "runtime=llama_cpp_server",
        "method=none",
        "precision=native",
        "workload=tiny",
        "workload.max_new_tokens=1000",
        "workload.repetitions=20",
        "run.timeout_s=12",
        cache_dir=model_cache,
        timeout=300,
    )
    assert r.returncode == 1
    (cell,) = children(mlflow_runs(tmp_path))
    assert cell.data.tags["harness.status"] == "failed"
    assert "timed out after 12 s" in cell.data.tags["harness.reason"]
    assert {p.pid for p in _servers()} <= before, "the server outlived its killed worker"
    assert not list(tmp_path.rglob("server.pgid"))


def test_an_external_server_cell_is_the_servers_not_ours(
    harness_cli: HarnessRun, model_cache: Path, tmp_path: Path
) -> None:
    """A server the harness did not launch: labelled as declared (else unknown), no file facts
    borrowed from the local model, no memory attributed, and input_tokens is what it prefilled."""
    from tests.runners.test_server_launch import launched

    server = launched(tmp_path / "server")
    try:
        r = harness_cli(
            "runtime=openai_server",
            f"runtime.base_url={server.base_url}",
            "runtime.served_precision=q4_1",
            "workload=tiny",
            "workload.input_tokens=64",
            cache_dir=model_cache,
        )
    finally:
        server.close()
    assert r.returncode == 0, r.stderr[-3000:]
    (cell,) = children(mlflow_runs(tmp_path))
    m, tags = cell.data.metrics, cell.data.tags
    assert tags["harness.validity"] == "VALID", tags.get("harness.invalid_reasons")
    assert (tags["harness.choice.method"], tags["harness.choice.precision"]) == ("unknown", "q4_1")
    assert cell.info.run_name.startswith("smollm2_135m/unknown/q4_1/openai_server/")
    assert tags["runtime.server.model"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert tags["runtime.server.model.owned_by"] == "me"  # llama-cpp-python's listing
    for key in ("model_file_bytes", "model_bpw", "peak_tree_rss_bytes", "peak_rss_bytes"):
        assert key not in m and tags[f"absent.{key}"]
    assert not [t for t in tags if t.startswith("artifact.")]
    assert m["client_peak_rss_bytes"] > 0 and "server_peak_rss_bytes" not in m
    assert m["input_throughput_tok_s"] > 0
    events = sorted(tmp_path.rglob("measure-0.jsonl"))
    lines = [json.loads(x) for x in events[0].read_text().splitlines()]
    assert {(x["prompt_tokens"], x["prompt_count_source"]) for x in lines} == {(64, "server_usage")}

"""Checkpoints from the Hub, offline: the shipped SmolLM2 placed in a real Hub cache layout
(blobs, snapshots, refs), resolved with HF_HUB_OFFLINE=1, measured, and keyed by its commit."""

from pathlib import Path

import pytest

from tests.conftest import HF_FILES, HarnessRun, mlflow_runs
from tests.hub_cache import commit_of, publish
from tests.integration.test_fake_sweep import children

pytestmark = pytest.mark.slow
GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
HF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what model=smollm2_135m_hub names
GGUF_ENTRY = f"+model.checkpoints.gguf={{repo: {GGUF_REPO}, files: {{q4_1: '*q4_1.gguf'}}}}"


def test_hub_checkpoints_resolved_offline_are_measured_and_keyed_by_commit(
    harness_cli: HarnessRun,
    model_cache: Path,
    tmp_path: Path,
    smollm_gguf: Path,
    hf_checkpoint: Path,
) -> None:
    hub = tmp_path / "hub"
    first = commit_of("gguf-1")
    publish(hub, GGUF_REPO, {"smollm2-135m-instruct-q4_1.gguf": smollm_gguf}, first)
    hf_files = {p.name: p for p in hf_checkpoint.iterdir() if p.is_file()}
    assert set(HF_FILES) <= set(hf_files)
    publish(hub, HF_REPO, hf_files, commit_of("hf-1"))
    secret = "hf_sentinelTOKEN0123456789"  # read by huggingface_hub, never written anywhere
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "HF_TOKEN": secret}
    base = ("model=smollm2_135m_hub", "workload=tiny", "workload.repetitions=2")
    gguf_cell = (*base, GGUF_ENTRY, "runtime=llama_cpp", "method=gguf", "precision=q4_1")

    plan = harness_cli(*gguf_cell, "plan=true", cache_dir=model_cache, env=env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    mib = smollm_gguf.stat().st_size / 2**20
    assert f"C1  {GGUF_REPO}@main ({first[:12]}): {mib:.1f} MiB, in the cache" in plan.stdout

    r = harness_cli(*gguf_cell, cache_dir=model_cache, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    hf = harness_cli(
        *base, "runtime=hf", "method=none", "precision=native", env=env, cache_dir=model_cache
    )
    assert hf.returncode == 0, hf.stderr[-3000:]
    same = harness_cli(*gguf_cell, cache_dir=model_cache, env=env)  # nothing moved: cached
    assert same.returncode == 0 and "1 already done" in same.stderr, same.stderr[-2000:]
    moved = commit_of("gguf-2")  # the branch moves to another commit: measured again
    publish(hub, GGUF_REPO, {"smollm2-135m-instruct-q4_1.gguf": smollm_gguf}, moved)
    again = harness_cli(*gguf_cell, cache_dir=model_cache, env=env)
    assert again.returncode == 0, again.stderr[-3000:]

    cells = children(mlflow_runs(tmp_path))
    by_commit = {c.data.tags.get("checkpoint.commit"): c for c in cells}
    assert set(by_commit) == {first, moved, commit_of("hf-1")}
    gguf = by_commit[first]
    tags, m = gguf.data.tags, gguf.data.metrics
    assert tags["harness.validity"] == "VALID", tags.get("harness.invalid_reasons")
    assert tags["checkpoint.repo"] == GGUF_REPO and tags["checkpoint.revision"] == "main"
    assert tags["checkpoint.files"] == "smollm2-135m-instruct-q4_1.gguf"
    assert tags["checkpoint.bytes"] == str(smollm_gguf.stat().st_size)
    assert tags["checkpoint.source"] == "model.checkpoints.gguf"
    assert tags["artifact.recipe.op"] == "source"  # published as q4_1: loaded as is
    assert m["output_throughput_tok_s"] > 0 and m["model_bpw"] > 4
    assert by_commit[moved].data.tags["harness.cell_key"] != tags["harness.cell_key"]
    hf_tags = by_commit[commit_of("hf-1")].data.tags
    assert hf_tags["harness.validity"] == "VALID", hf_tags.get("harness.invalid_reasons")
    assert hf_tags["checkpoint.source"] == "model.checkpoints.none"
    assert hf_tags["artifact.file_type"] == "BF16"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and hub not in p.parents]
    assert len(written) > 20 and not [p for p in written if secret.encode() in p.read_bytes()]


def test_a_checkpoint_is_downloaded_once_in_the_prepare_step_and_shared(
    harness_cli: HarnessRun, model_cache: Path, tmp_path: Path, smollm_gguf: Path
) -> None:
    """Online, through huggingface_hub against a loopback stand-in for the Hub: two cells on
    one checkpoint, one download (with the Hub's progress bar), both keyed by its commit."""
    from tests.hub_server import FakeHub, Repo

    commit = commit_of("smol")
    fake = FakeHub({"org/smol-gguf": Repo(commit, {"smol-q4_1.gguf": smollm_gguf})})
    url = fake.start()
    env = {"HF_ENDPOINT": url, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    env["TQDM_POSITION"] = "-1"  # the Hub's bars show on a terminal; force them off one
    try:
        r = harness_cli(
            "hydra.mode=MULTIRUN",
            "model=smollm2_135m_hub",
            "+model.checkpoints.gguf={repo: org/smol-gguf, files: {q4_1: '*q4_1.gguf'}}",
            "runtime=llama_cpp",
            "method=gguf",
            "precision=q4_1",
            "workload=tiny",
            "workload.repetitions=1,2",
            cache_dir=model_cache,
            env=env,
        )
    finally:
        fake.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    assert dict(fake.downloads) == {"org/smol-gguf/smol-q4_1.gguf": 1}
    assert "Download complete" in r.stderr  # huggingface_hub's own progress bar
    cells = children(mlflow_runs(tmp_path))
    assert len(cells) == 2
    for cell in cells:
        tags = cell.data.tags
        assert tags["harness.validity"] == "VALID", tags.get("harness.invalid_reasons")
        assert (tags["checkpoint.repo"], tags["checkpoint.commit"]) == ("org/smol-gguf", commit)
        assert tags["checkpoint.bytes"] == str(smollm_gguf.stat().st_size)
    snapshot = tmp_path / "hub" / "models--org--smol-gguf" / "snapshots" / commit
    assert (snapshot / "smol-q4_1.gguf").stat().st_size == smollm_gguf.stat().st_size

"""Which checkpoint a cell starts from, and Hub resolution from a real cache layout offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.artifacts import hub
from harness.artifacts.checkpoints import DIR_PATTERNS, NoCheckpoint, choose
from harness.config.errors import UserError
from harness.config.schema import CheckpointConfig, ModelConfig, ModelSource
from runners import ModelFormat
from tests.hub_cache import commit_of, publish

GGUF, HF = ModelFormat.gguf, ModelFormat.hf


def _model(**checkpoints: CheckpointConfig) -> ModelConfig:
    return ModelConfig(name="m", checkpoints=dict(checkpoints))


BASE = CheckpointConfig(repo="org/m")
AWQ = CheckpointConfig(repo="org/m-awq", precision="int4")
QUANTS = CheckpointConfig(repo="org/m-gguf", files={"q4_k_m": "*Q4_K_M.gguf"})


def test_a_method_takes_its_own_checkpoint_in_the_runtimes_format() -> None:
    model = _model(none=BASE, awq=AWQ, gguf=QUANTS)
    awq = choose(model, "awq", "int4", HF)
    assert (awq.name, awq.spec, awq.patterns, awq.exact) == ("awq", AWQ, DIR_PATTERNS, True)
    q4 = choose(model, "gguf", "q4_k_m", GGUF)
    assert (q4.name, q4.patterns, q4.exact) == ("gguf", ("*Q4_K_M.gguf",), True)
    assert choose(model, "none", "native", HF).spec is BASE


def test_load_time_methods_and_casts_start_from_the_baseline() -> None:
    model = _model(none=BASE, awq=AWQ)
    for method, precision in (("torchao", "int4"), ("bnb", "nf4"), ("none", "f16")):
        choice = choose(model, method, precision, HF)
        assert (choice.name, choice.where) == ("none", "model.checkpoints.none")


def test_no_checkpoint_names_the_ones_there_are() -> None:
    model = _model(none=BASE, awq=AWQ, gguf=QUANTS)
    with pytest.raises(NoCheckpoint) as e:
        choose(model, "gptq", "int4", HF)
    assert str(e.value) == (
        "model m has no checkpoint for method=gptq precision=int4 as a checkpoint directory "
        "(model.checkpoints has: awq (int4), gguf (q4_k_m), none); set "
        "model.checkpoints.gptq.path=... or model.checkpoints.gptq.repo=org/name"
    )
    with pytest.raises(NoCheckpoint, match="precision=q8_0 as a GGUF file"):
        choose(model, "gguf", "q8_0", GGUF)  # a precision the GGUF repo does not list
    with pytest.raises(NoCheckpoint, match="method=none precision=native as a GGUF file"):
        choose(model, "none", "native", GGUF)  # llama.cpp cannot load the safetensors baseline


def test_a_local_path_wins_and_model_source_still_serves_every_method(tmp_path: Path) -> None:
    local = CheckpointConfig(repo="org/m-awq", path=str(tmp_path))
    choice = choose(_model(awq=local), "awq", "int4", HF)
    assert (choice.spec, choice.patterns, choice.exact) == (local, (), False)
    packaged = ModelConfig(name="m", source=ModelSource(path="/x.gguf"), checkpoints={"none": BASE})
    assert choose(packaged, "gguf", "q4_k_m", GGUF).where == "model.source"


def test_a_repo_id_that_is_not_org_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^repo='llama-70b' is not a Hub repo id \(org/name\)"):
        CheckpointConfig(repo="llama-70b")
    with pytest.raises(ValueError, match=r"^model\.checkpoints\.awq has unknown key 'repos'"):
        ModelConfig(name="m", checkpoints={"awq": {"repos": "a/b"}})


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "_resolved", {})
    return cache


def _files(tmp_path: Path, *names: str) -> dict[str, Path]:
    out = {}
    for name in names:
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 100)
        out[name] = path
    return out


def test_offline_resolution_reads_refs_and_snapshots(offline_hub: Path, tmp_path: Path) -> None:
    commit = commit_of("one")
    files = _files(tmp_path, "config.json", "model.safetensors", "pytorch_model.bin")
    publish(offline_hub, "org/m", files, commit)
    r = hub.resolve("org/m", "main", DIR_PATTERNS, "model.checkpoints.none")
    assert (r.commit, r.online, r.complete) == (commit, False, True)
    assert [f.name for f in r.files] == ["config.json", "model.safetensors"]  # no pickles
    assert r.total_bytes == 1100 + 1700 and r.missing_bytes == 0
    assert r.load_path() == offline_hub / "models--org--m" / "snapshots" / commit
    assert r.tags()["checkpoint.commit"] == commit
    assert r.tags()["checkpoint.files"] == "config.json,model.safetensors"
    moved = commit_of("two")
    publish(offline_hub, "org/m", files, moved)  # the branch moves: another identity
    hub._resolved.clear()
    again = hub.resolve("org/m", "main", DIR_PATTERNS, "model.checkpoints.none")
    assert again.commit == moved and again.key != r.key


def test_offline_without_the_checkpoint_is_one_line_naming_the_repo(offline_hub: Path) -> None:
    with pytest.raises(hub.HubUnavailable) as e:
        hub.resolve("org/absent", "main", DIR_PATTERNS, "model.checkpoints.none")
    assert str(e.value).startswith(
        "model.checkpoints.none: org/absent@main is not in the Hub cache ("
    )
    assert str(e.value).endswith(
        ") and HF_HUB_OFFLINE=1; download it where the Hub is reachable (or mount that cache)"
    )


def test_a_gguf_pattern_must_name_one_quantization(offline_hub: Path, tmp_path: Path) -> None:
    names = ("m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf")
    publish(offline_hub, "org/g", _files(tmp_path, *names), commit_of("g"))
    split = hub.resolve("org/g", "main", ("*Q8_0*.gguf",), "model.checkpoints.gguf")
    hub.check_gguf(split, "model.checkpoints.gguf")  # both parts of one file: fine
    assert split.load_path().name == "m-Q8_0-00001-of-00002.gguf"
    several = hub.resolve("org/g", "main", ("*.gguf",), "model.checkpoints.gguf")
    with pytest.raises(UserError, match="the pattern matches several files"):
        hub.check_gguf(several, "model.checkpoints.gguf")
    half = hub.resolve("org/g", "main", ("*00001-of-00002.gguf",), "model.checkpoints.gguf")
    with pytest.raises(UserError, match="1 of the 2 parts of m-Q8_0 match"):
        hub.check_gguf(half, "model.checkpoints.gguf")

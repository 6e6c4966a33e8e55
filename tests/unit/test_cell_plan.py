"""A cell is planned once: the planned Cell (source, derivation steps, footprint, verdict)
travels to its job as a file and comes back equal, so the job runs exactly that plan."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.register import register_configs
from harness.plan import cell as planned
from harness.plan.cells import plan_cell

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # one for the module: the model is hashed once


def plan(cache: Path, *overrides: str):
    every = [f"run.cache_dir={cache}", *overrides]
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose("config", overrides=every, return_hydra_config=True)
    return plan_cell(3, cfg, cfg.hydra.runtime.choices, every)


@pytest.mark.parametrize(
    "overrides",
    [("precision=q4_k_m",), ("runtime=hf", "method=torchao", "precision=int8"), ("precision=fp8",)],
)
def test_a_planned_cell_round_trips_through_its_file(
    cache: Path, tmp_path: Path, overrides: tuple
) -> None:
    cell = plan(cache, *overrides)
    back = planned.load(planned.save(cell, tmp_path / "cells" / "3.json"))
    assert back == cell.__class__(**{**cell.__dict__, "source": back.source})
    assert back.source is not None and cell.source is not None
    assert (back.source.path, back.source.sha256) == (cell.source.path, cell.source.sha256)
    assert back.key == cell.key and back.steps == cell.steps and back.footprint == cell.footprint


def test_the_plan_carries_what_the_job_needs(cache: Path) -> None:
    cell = plan(cache, "precision=q4_k_m")
    assert cell.skip is None and cell.footprint is not None and cell.source is not None
    # the packaged Q4_1 file is dequantized to f16, then quantized by llama.cpp
    assert [s.op for s in cell.steps] == ["dequantize_f16", "llama_model_quantize"]
    skipped = plan(cache, "precision=fp8")
    assert skipped.skip is not None and skipped.steps == ()


def test_a_file_of_another_plan_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cell.json"
    path.write_text('{"plan_version": 0, "cell": {}}')
    with pytest.raises(ValueError, match="planned cell format 0, expected 2"):
        planned.load(path)


@pytest.mark.parametrize(
    ("overrides", "skip"),
    [
        (
            ("runtime.n_ctx=64", "workload.max_new_tokens=100"),
            "workload.max_new_tokens=100 exceeds the runtime's context of 64 tokens",
        ),
        (
            ("runtime.n_ctx=256", "workload.input_tokens=200", "workload.max_new_tokens=64"),
            "workload.input_tokens=200 + workload.max_new_tokens=64 exceeds the runtime's "
            "context of 256 tokens",
        ),
        (
            ("runtime.n_threads=999",),
            "runtime.n_threads=999 exceeds this machine's",
        ),
        (("hardware.threads=4096",), "hardware.threads=4096 exceeds this machine's"),
    ],
)
def test_impossible_work_is_refused_before_anything_builds(
    cache: Path, overrides: tuple[str, ...], skip: str
) -> None:
    cell = plan(cache, *overrides)
    assert cell.skip is not None and cell.skip.startswith(skip)
    assert not list(cache.rglob("*.gguf"))  # nothing was built


def test_oversubscribed_threads_run_when_asked_and_say_so(cache: Path) -> None:
    cell = plan(cache, "runtime.n_threads=999", "run.oversubscribe_threads=true")
    assert cell.skip is None and "runtime.n_threads=999 exceeds" in (cell.caveat or "")

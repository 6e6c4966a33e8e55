from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.convert import to_typed
from harness.config.register import register_configs
from harness.plan.matrix import cell_id, cell_key, expand, flatten, sweep_id

CONF = str(Path(__file__).resolve().parents[2] / "conf")
PRECISIONS = ["f16", "q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def sweep_jobs(*cli: str) -> list[tuple[list[str], dict[str, str]]]:
    """Expand like the HarnessSweeper does, and compose each job (as tests must: compose()
    runs in RUN mode)."""
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        base = compose("config", overrides=["+sweep=135m_gguf"], return_hydra_config=True)
        params = dict(base.hydra.sweeper.params)
        jobs = expand(params, ["+sweep=135m_gguf", *cli])
        out = []
        for job in jobs:
            cfg = compose("config", overrides=job, return_hydra_config=True)
            out.append((job, dict(cfg.hydra.runtime.choices)))
        return out


def test_135m_gguf_expands_to_six_cells_reference_first() -> None:
    jobs = sweep_jobs()
    assert len(jobs) == 6
    ids = [cell_id(choices, job) for job, choices in jobs]
    assert ids == [f"smollm2_135m/gguf/{p}/llama_cpp/cpu_local/short_chat" for p in PRECISIONS]


def test_command_line_replaces_the_sweep_axis() -> None:
    jobs = sweep_jobs("precision=q4_k_m,q8_0")
    assert [choices["precision"] for _, choices in jobs] == ["q4_k_m", "q8_0"]


def test_command_line_adds_an_axis() -> None:
    jobs = sweep_jobs("runtime.n_threads=1,2")
    assert len(jobs) == 12
    assert cell_id(jobs[1][1], jobs[1][0]).endswith("short_chat runtime.n_threads=2")


def test_cell_key_is_stable_and_sensitive() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        a = to_typed(compose("config"))
        b = to_typed(compose("config", overrides=["run.force=true", "tracking.experiment=x"]))
        c = to_typed(compose("config", overrides=["workload.max_new_tokens=32"]))
    versions = {"llama-cpp-python": "0.3.36"}
    machine = {"cpu": "X", "gpus": []}
    key = cell_key(a, "sha", versions, machine)
    assert key == cell_key(b, "sha", versions, machine)  # how it runs is not what it measures
    assert key != cell_key(c, "sha", versions, machine)
    assert key != cell_key(a, "other-sha", versions, machine)
    assert key != cell_key(a, "sha", {"llama-cpp-python": "0.3.37"}, machine)
    assert key != cell_key(a, "sha", versions, {"cpu": "Y", "gpus": []})


def test_sweep_id_ignores_cell_order() -> None:
    assert sweep_id("s", ["a", "b"]) == sweep_id("s", ["b", "a"])
    assert sweep_id("s", ["a", "b"]) != sweep_id("t", ["a", "b"])


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "None",
    }


def test_grid_blocks_expand_one_after_another_without_duplicates() -> None:
    grid = [
        {"runtime": "llama_cpp", "precision": "f16,q8_0"},
        {"runtime": "hf", "method": "none", "precision": "bf16"},
        {"runtime": "llama_cpp", "precision": "f16"},  # already listed: dropped
    ]
    jobs = expand({"model": "smollm2_135m"}, ["workload.repetitions=2"], grid)
    assert jobs == [
        ["model=smollm2_135m", "runtime=llama_cpp", "precision=f16", "workload.repetitions=2"],
        ["model=smollm2_135m", "runtime=llama_cpp", "precision=q8_0", "workload.repetitions=2"],
        [
            "model=smollm2_135m",
            "runtime=hf",
            "method=none",
            "precision=bf16",
            "workload.repetitions=2",
        ],
    ]


def test_runtimes_sweep_pairs_each_runtime_with_what_it_runs() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        base = compose("config", overrides=["+sweep=135m_runtimes"], return_hydra_config=True)
        grid = [dict(b) for b in base.hydra.sweeper.grid]
        jobs = expand(base.hydra.sweeper.params, ["+sweep=135m_runtimes"], grid)
        runtimes = []
        for job in jobs:
            cfg = compose("config", overrides=job, return_hydra_config=True)
            c = cfg.hydra.runtime.choices
            runtimes.append((c["runtime"], c["method"], c["precision"]))
    assert {r for r, _, _ in runtimes} == {"llama_cpp", "hf", "llama_cpp_server"}
    assert ("hf", "torchao", "int8") in runtimes
    assert ("llama_cpp", "gguf", "f16") in runtimes

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.schema import HarnessConfig, register_configs
from harness.feasibility.compat import missing_reason, required_packages, skip_reason
from harness.plan.cells import to_typed

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def config(*overrides: str) -> HarnessConfig:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return to_typed(compose("config", overrides=list(overrides)))


def reason(*overrides: str) -> str | None:
    return skip_reason(config(*overrides))


@pytest.mark.parametrize("precision", ["f16", "q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"])
def test_gguf_precisions_run_on_llama_cpp(precision: str) -> None:
    assert reason(f"precision={precision}") is None


def test_fp8_is_not_a_gguf_precision() -> None:
    r = reason("precision=fp8")
    assert r is not None and r.startswith("method gguf cannot produce precision fp8 (it produces: ")


def test_method_none_loads_the_checkpoint_as_is_or_cast() -> None:
    assert reason("method=none", "precision=native") is None
    assert reason("method=none", "precision=q4_k_m") == (
        "method none cannot produce precision q4_k_m (it produces: bf16, f16, f32, native)"
    )
    # llama.cpp cannot cast a GGUF at load time; transformers can
    assert reason("method=none", "precision=bf16") == (
        "runtime llama_cpp does not run none at precision bf16 (runs none at: native)"
    )
    assert reason("runtime=hf", "method=none", "precision=bf16") is None


def test_hf_runs_torchao_but_not_gguf_quants() -> None:
    assert reason("runtime=hf", "method=torchao", "precision=int8") is None
    assert reason("runtime=hf", "method=torchao", "precision=int4") is None
    assert reason("runtime=hf", "precision=q4_k_m") == (
        "runtime hf does not run method gguf "
        "(runs: awq, bnb, compressed_tensors, gptq, none, torchao)"
    )
    assert reason("method=torchao", "precision=int8") == (
        "runtime llama_cpp does not run method torchao (runs: gguf, none)"
    )


def test_bitsandbytes_is_refused_on_cpu_with_the_reason() -> None:
    assert reason("runtime=hf", "method=bnb", "precision=nf4") == (
        "method bnb does not run on cpu: bitsandbytes quantized kernels need a CUDA GPU"
    )


def test_concurrency_needs_a_server_runtime() -> None:
    r = reason("workload.concurrency=4")
    assert r == (
        "runtime llama_cpp serves 1 request(s) at a time in-process; "
        "workload.concurrency=4 needs a server runtime (e.g. runtime=openai_server)"
    )
    assert reason("runtime=llama_cpp_server", "precision=f16", "workload.concurrency=4") is None


def test_missing_packages_name_the_install_command() -> None:
    cfg = config("runtime=hf", "method=torchao", "precision=int8")
    assert required_packages(cfg) == (
        "torch",
        "transformers",
        "safetensors",
        "accelerate",
        "torchao",
    )
    present = dict.fromkeys(required_packages(cfg), "1.0")
    assert missing_reason(cfg, present) is None
    assert missing_reason(cfg, {**present, "torchao": None, "transformers": None}) == (
        "runtime hf needs transformers, torchao, not installed in this environment; "
        "install with `pip install .[hf]` and `pip install torchao`"
    )


def test_a_server_client_needs_no_method_library() -> None:
    cfg = config("runtime=llama_cpp_server", "precision=f16")
    assert "torchao" not in required_packages(cfg)
    assert "llama-cpp-python" in required_packages(cfg)

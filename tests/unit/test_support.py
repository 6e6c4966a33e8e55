"""The one answer to "can this cell run" (harness/feasibility/support.py + support.yaml): the
table answers the shared reference's matrix, and ``check`` applies it to composed cells."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.convert import to_typed
from harness.config.register import register_configs
from harness.config.schema import HarnessConfig
from harness.feasibility.support import (
    check,
    check_engine,
    engines,
    missing_reason,
    parse,
    required_packages,
    table,
)
from runners import Engine, get_runner, runner_names
from runners.llama_cpp import FTYPES

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def config(*overrides: str) -> HarnessConfig:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return to_typed(compose("config", overrides=list(overrides)))


def reason(*overrides: str) -> str | None:
    return check(config(*overrides)).reason


@pytest.mark.parametrize(
    ("engine", "method", "precision", "hardware"),
    [
        (Engine.vllm, "awq", "int4", "ampere"),
        (Engine.vllm, "gptq", "int4", "hopper"),
        (Engine.tensorrt_llm, "awq", "int4", "ada"),
        (Engine.llama_cpp, "gguf", "q4_k_m", "cpu"),
        (Engine.llama_cpp, "gguf", "q2_k", "blackwell"),
        (Engine.transformers, "bnb", "nf4", "ampere"),
        (Engine.transformers, "none", "bf16", "cpu"),
        (Engine.openai_compatible, "awq", "int4", None),  # a remote server: any hardware
    ],
)
def test_supported_combinations_run(
    engine: Engine, method: str, precision: str, hardware: str | None
) -> None:
    assert check_engine(engine, method, precision, hardware).runs


def test_fp8_on_ampere_runs_weight_only_with_the_caveat() -> None:
    verdict = check_engine(Engine.vllm, "compressed_tensors", "fp8", "ampere")
    assert verdict.runs and verdict.caveat is not None and "W8A16" in verdict.caveat
    assert check_engine(Engine.vllm, "compressed_tensors", "fp8", "hopper").caveat is None
    assert not check_engine(Engine.vllm, "compressed_tensors", "fp8", "turing").runs


def test_unsupported_hardware_names_where_it_does_run() -> None:
    verdict = check_engine(Engine.tensorrt_llm, "awq", "int4", "blackwell")
    assert not verdict.runs
    assert verdict.reason == (
        "tensorrt_llm awq int4 runs on ampere, ada, hopper, not on blackwell: "
        "W4A16 AWQ/GPTQ is listed for Ampere, Ada and Hopper only"
    )
    bnb = check_engine(Engine.transformers, "bnb", "nf4", "cpu").reason or ""
    assert "need a CUDA GPU" in bnb


def test_never_supported_says_why() -> None:
    assert "out-of-tree" in (check_engine(Engine.vllm, "gguf", "q4_k_m", "hopper").reason or "")
    assert "removed from vLLM core" in (
        check_engine(Engine.vllm, "bnb", "nf4", "hopper").reason or ""
    )
    assert "GGUF only" in (check_engine(Engine.llama_cpp, "awq", "int4", "hopper").reason or "")


def test_no_rule_lists_what_the_engine_runs() -> None:
    why = check_engine(Engine.llama_cpp, "none", "bf16", "cpu").reason or ""
    assert why.startswith("llama.cpp none bf16 is not in the support matrix")
    assert "gguf *" in why


def test_every_engine_a_runner_can_drive_has_rules() -> None:
    assert engines() == set(Engine)


def test_the_gguf_precisions_are_llama_cpps_file_types() -> None:
    assert set(table().methods["gguf"].precisions) == set(FTYPES)


def test_bad_rows_are_refused_naming_the_rule() -> None:
    row = {"engine": "vllm", "method": "awq", "precisions": ["int4"], "hardware": ["volta2"]}
    with pytest.raises(ValueError, match="unknown hardware class 'volta2'"):
        parse({"rules": [row]})
    with pytest.raises(ValueError, match="unknown engine 'trtllm'"):
        parse({"rules": [{**row, "engine": "trtllm", "hardware": ["ampere"]}]})


@pytest.mark.parametrize("precision", ["f16", "q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"])
def test_gguf_precisions_run_on_llama_cpp(precision: str) -> None:
    assert reason(f"precision={precision}") is None


def test_a_method_names_what_it_produces() -> None:
    # was a KeyError traceback from the quantize plan before feasibility had one answer
    r = reason("precision=fp8")
    assert r is not None and r.startswith("method gguf cannot produce precision fp8 (it produces: ")
    assert reason("method=none", "precision=q4_k_m") == (
        "method none cannot produce precision q4_k_m (it produces: bf16, f16, f32, native)"
    )


def test_method_none_loads_the_checkpoint_as_is_or_cast() -> None:
    assert reason("method=none", "precision=native") is None
    # llama.cpp cannot cast a GGUF at load time; transformers can
    assert (reason("method=none", "precision=bf16") or "").startswith(
        "llama.cpp none bf16 is not in the support matrix (llama.cpp runs: "
    )
    assert reason("runtime=hf", "method=none", "precision=bf16") is None


def test_hf_runs_torchao_but_not_gguf_quants() -> None:
    assert reason("runtime=hf", "method=torchao", "precision=int8") is None
    assert reason("runtime=hf", "method=torchao", "precision=int4") is None
    assert (reason("runtime=hf", "precision=q4_k_m") or "").startswith(
        "transformers does not run gguf q4_k_m: transformers dequantizes GGUF at load"
    )
    assert (reason("method=torchao", "precision=int8") or "").startswith(
        "llama.cpp does not run torchao int8: llama.cpp loads GGUF only"
    )


def test_bitsandbytes_is_refused_on_cpu_with_the_reason() -> None:
    assert reason("runtime=hf", "method=bnb", "precision=nf4") == (
        "transformers bnb nf4 runs on turing, ampere, ada, hopper, blackwell, not on cpu: "
        "bitsandbytes' quantized kernels need a CUDA GPU"
    )


def test_a_server_launch_profile_is_judged_as_its_engine() -> None:
    on = ("runtime=vllm", "hardware=h100_80gb", "method=awq", "precision=int4")
    assert reason(*on) is None
    assert "serves runtime.dtype" in (reason(*on[:2], "method=none", "precision=bf16") or "")
    remote = ("runtime=openai_server", "method=gptq", "precision=int4")
    assert reason(*remote) is None  # a server run elsewhere: whatever it serves
    assert "quantizes nothing at load" in (
        reason("runtime=openai_server", "method=torchao", "precision=int8") or ""
    )


def test_concurrency_needs_a_server_runtime() -> None:
    assert reason("workload.concurrency=4") == (
        "runtime llama_cpp serves 1 request(s) at a time in-process; "
        "workload.concurrency=4 needs a server runtime (e.g. runtime=openai_server)"
    )
    assert reason("runtime=llama_cpp_server", "precision=f16", "workload.concurrency=4") is None


def test_missing_packages_name_the_install_command() -> None:
    cfg = config("runtime=hf", "method=torchao", "precision=int8")
    assert list(required_packages(cfg)) == [
        "torch",
        "transformers",
        "safetensors",
        "accelerate",
        "torchao",
    ]
    present = dict.fromkeys(required_packages(cfg), "1.0")
    assert missing_reason(cfg, present) is None
    assert missing_reason(cfg, {**present, "torchao": None, "transformers": None}) == (
        "runtime hf needs transformers, torchao, not installed in this environment; "
        "install with `pip install .[hf]` and `pip install torchao`"
    )


def test_a_server_client_needs_no_method_library() -> None:
    cfg = config("runtime=llama_cpp_server", "precision=f16")
    needed = required_packages(cfg)
    assert "torchao" not in needed and needed["uvicorn"] == "pip install .[server]"
    assert "llama-cpp-python" in needed


def test_every_runner_declares_its_engine_and_install() -> None:
    for name in runner_names():
        runner = get_runner(name)
        assert isinstance(runner.Config().engine(), Engine)
        assert runner.install_hint is None or runner.install_hint.startswith("pip install")

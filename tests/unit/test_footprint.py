"""The fit planner on composed configs: the issue's checked numbers and its bad input."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.convert import to_typed
from harness.config.errors import UserError
from harness.config.register import register_configs
from harness.feasibility.footprint import predict
from harness.feasibility.memory import FitStatus
from harness.feasibility.verdict import judge

CONF = str(Path(__file__).resolve().parents[2] / "conf")
GIB = 2**30


def config(*overrides: str):
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose("config", overrides=["model=llama31_70b", *overrides])
    return to_typed(cfg)


def fp(*overrides: str):
    result = predict(config(*overrides))
    assert result is not None
    return result


def test_awq_70b_on_vllm_h100_fits_with_the_kv_left_for_context() -> None:
    f = fp("method=awq", "precision=int4", "runtime=vllm", "hardware=h100_80gb")
    assert f.weights / GIB == pytest.approx(37.0, abs=0.05)  # 4.156 bpw, 16-bit embeddings
    assert f.kv_tokens == 8192 and f.kv == 8192 * 320 * 1024  # bf16 KV, 320 KiB per token
    assert f.fit.status is FitStatus.fits
    assert f.usable == pytest.approx(0.9 * 79.65 * GIB)  # gpu_memory_utilization
    assert f.reserved == f.usable  # vLLM takes its share up front
    assert f.fit.max_tokens * 320 * 1024 <= f.usable - f.weights


def test_vllm_at_the_models_own_context_needs_40_gib_of_kv() -> None:
    f = fp(
        "method=awq",
        "precision=int4",
        "runtime=vllm",
        "hardware=h100_80gb",
        "runtime.max_model_len=null",
    )
    assert f.kv_tokens == 131072 and f.kv == 40 * GIB
    assert f.fit.status is FitStatus.no
    fp8 = fp(
        "method=awq",
        "precision=int4",
        "runtime=vllm",
        "hardware=h100_80gb",
        "runtime.max_model_len=null",
        "runtime.kv_cache_dtype=fp8",
    )
    assert fp8.kv == 20 * GIB and fp8.fit.status is FitStatus.fits


def test_four_bit_70b_needs_offload_on_a_24gb_card_and_fits_80gb() -> None:
    small = fp("method=gguf", "precision=q4_k_m", "runtime=llama_cpp_gpu", "hardware=rtx4090_24gb")
    assert small.fit.status is FitStatus.no
    assert small.offload_layers is not None and 0 < small.offload_layers < 80
    reason = small.skip_reason("rtx4090_24gb") or ""
    assert f"runtime.n_gpu_layers={small.offload_layers} of 80" in reason
    big = fp("method=gguf", "precision=q4_k_m", "runtime=llama_cpp_gpu", "hardware=a100_80gb")
    assert big.fit.status is FitStatus.fits
    assert big.weights / GIB == pytest.approx(40.2, abs=0.1)  # 4.89 bpw file average
    hf = fp("method=awq", "precision=int4", "runtime=hf", "hardware=rtx4090_24gb")
    assert hf.fit.status is FitStatus.no and hf.offload_layers is None  # no offload there


def test_trtllm_takes_its_fraction_of_what_is_free() -> None:
    f = fp("method=awq", "precision=int4", "runtime=trtllm", "hardware=h100_80gb")
    fixed = f.weights + f.activations + f.overhead
    assert f.reserved == pytest.approx(fixed + 0.9 * (79.65 * GIB - fixed))


def test_pruning_skips_with_the_reason_unless_forced() -> None:
    cfg = config("method=awq", "precision=int4", "runtime=vllm", "hardware=rtx4090_24gb")
    verdict = judge(cfg, None, strict=True)
    assert verdict.no_fit is not None and verdict.no_fit.startswith(
        "predicted not to fit rtx4090_24gb: needs 43.1 GiB"
    )
    forced = config(
        "method=awq",
        "precision=int4",
        "runtime=vllm",
        "hardware=rtx4090_24gb",
        "run.force_fit=true",
    )
    assert judge(forced, None, strict=True).no_fit is None
    gguf_on_vllm = config("method=gguf", "precision=q4_k_m", "runtime=vllm", "hardware=h100_80gb")
    assert "out-of-tree" in (judge(gguf_on_vllm, None, strict=True).unsupported or "")


def test_smollm2_on_this_cpu_counts_the_worker_and_vocabulary() -> None:
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = to_typed(compose("config", overrides=["precision=f16"]))
    f = predict(cfg, exact_weights=269_088_768.0)  # the f16 file's tensor bytes
    assert f is not None and f.where == "host"
    assert f.kv == 2048 * 2 * 30 * 3 * 64 * 2  # n_ctx cells, f16 K and V: 45 MiB
    # measured peak RSS of this cell on the CPU sweep: 392-398 MiB
    assert f.need / 2**20 == pytest.approx(393, abs=5)


def test_hardware_without_memory_is_an_error_naming_the_field() -> None:
    with pytest.raises(
        UserError,
        match=re.escape("hardware profile 'h100_80gb' has no memory size; set hardware.memory_gb"),
    ):
        predict(
            config(
                "method=awq",
                "precision=int4",
                "runtime=vllm",
                "hardware=h100_80gb",
                "hardware.memory_gb=null",
            )
        )


def test_gpu_profile_without_arch_is_an_error_naming_the_field() -> None:
    cfg = config(
        "method=awq", "precision=int4", "runtime=vllm", "hardware=h100_80gb", "hardware.arch=null"
    )
    with pytest.raises(
        UserError, match=re.escape("has no arch; set hardware.arch to one of: turing")
    ):
        judge(cfg, None, strict=True)


def test_architecture_missing_a_field_is_an_error_naming_it() -> None:
    with pytest.raises(UserError, match=re.escape("model.architecture.kv_heads has no value")):
        config(
            "method=awq",
            "precision=int4",
            "runtime=vllm",
            "hardware=h100_80gb",
            "model.architecture.kv_heads=???",
        )


def test_unknown_kv_dtype_names_the_choices() -> None:
    with pytest.raises(
        UserError, match=re.escape("runtime.type_k='fp4' is invalid; choose one of: f32")
    ):
        config(
            "method=gguf",
            "precision=q4_k_m",
            "runtime=llama_cpp_gpu",
            "hardware=h100_80gb",
            "runtime.type_k=fp4",
        )


def test_plan_without_architecture_is_an_error() -> None:
    cfg = config(
        "method=awq",
        "precision=int4",
        "runtime=vllm",
        "hardware=h100_80gb",
        "model.architecture=null",
    )
    with pytest.raises(UserError, match=re.escape("has no architecture; the memory plan needs")):
        judge(cfg, None, strict=True)
    assert judge(cfg, None, strict=False).unpredicted is not None  # a run just notes it


def test_unknown_vllm_kv_cache_dtype_names_the_choices() -> None:
    with pytest.raises(UserError, match=re.escape("runtime.kv_cache_dtype='fp4' is invalid")):
        config("method=awq", "precision=int4", "runtime=vllm", "runtime.kv_cache_dtype=fp4")

"""The support matrix (harness/data/support.yaml) answers the shared reference's table."""

import pytest

from harness.feasibility.support import check, engines, parse


@pytest.mark.parametrize(
    ("engine", "method", "precision", "hardware"),
    [
        ("vllm", "awq", "int4", "ampere"),
        ("vllm", "gptq", "int4", "hopper"),
        ("tensorrt_llm", "awq", "int4", "ada"),
        ("llama.cpp", "gguf", "q4_k_m", "cpu"),
        ("llama.cpp", "gguf", "q2_k", "blackwell"),
        ("transformers", "bnb", "nf4", "ampere"),
        ("transformers", "none", "bf16", "cpu"),
    ],
)
def test_supported_combinations_run(
    engine: str, method: str, precision: str, hardware: str
) -> None:
    assert check(engine, method, precision, hardware).runs


def test_fp8_on_ampere_runs_weight_only_with_the_caveat() -> None:
    verdict = check("vllm", "compressed_tensors", "fp8", "ampere")
    assert verdict.runs and verdict.caveat is not None and "W8A16" in verdict.caveat
    assert check("vllm", "compressed_tensors", "fp8", "hopper").caveat is None
    assert not check("vllm", "compressed_tensors", "fp8", "turing").runs


def test_unsupported_hardware_names_where_it_does_run() -> None:
    verdict = check("tensorrt_llm", "awq", "int4", "blackwell")
    assert not verdict.runs
    assert verdict.reason == (
        "tensorrt_llm awq int4 runs on ampere, ada, hopper, not on blackwell: "
        "W4A16 AWQ/GPTQ is listed for Ampere, Ada and Hopper only"
    )
    assert "need a CUDA GPU" in (check("transformers", "bnb", "nf4", "cpu").reason or "")


def test_never_supported_says_why() -> None:
    assert "out-of-tree" in (check("vllm", "gguf", "q4_k_m", "hopper").reason or "")
    assert "removed from vLLM core" in (check("vllm", "bnb", "nf4", "hopper").reason or "")
    assert "GGUF only" in (check("llama.cpp", "awq", "int4", "hopper").reason or "")


def test_no_rule_lists_what_the_engine_runs() -> None:
    reason = check("llama.cpp", "none", "bf16", "cpu").reason or ""
    assert reason.startswith("llama.cpp none bf16 is not in the support matrix")
    assert "gguf *" in reason


def test_every_engine_the_runners_declare_is_in_the_matrix() -> None:
    assert engines() == {"llama.cpp", "vllm", "tensorrt_llm", "transformers"}


def test_a_rule_with_an_unknown_hardware_class_is_refused() -> None:
    row = {"engine": "vllm", "method": "awq", "precisions": ["int4"], "hardware": ["volta2"]}
    with pytest.raises(ValueError, match="unknown hardware class 'volta2'"):
        parse({"rules": [row]})

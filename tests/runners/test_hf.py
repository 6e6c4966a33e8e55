"""The hf adapter against real torch + transformers on SmolLM2-135M converted from its GGUF."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifacts.hf_checkpoint import describe_checkpoint
from runners import Engine, LoadSpec, ModelFormat, Request, get_runner
from runners.hf import METHOD_PACKAGES, HFConfig, HFRunner

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
PROMPT_IDS = (504, 3575, 282, 4649, 314)  # SmolLM2's tokenizer adds no BOS (as in llama.cpp)
N = 8


def make(path: Path, method: str = "none", precision: str = "bf16", **config: object) -> HFRunner:
    return HFRunner(HFConfig(**config), LoadSpec(path, "cpu", 2, method, precision))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bf16(hf_checkpoint: Path) -> Iterator[HFRunner]:
    runner = make(hf_checkpoint)
    runner.load()
    yield runner
    runner.close()


def test_importing_runners_hf_imports_no_torch() -> None:
    code = "import sys, runners.hf; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_registered_with_capabilities() -> None:
    cls = get_runner("hf")
    assert cls is HFRunner
    caps = cls.capabilities
    assert caps.streaming and caps.batching and caps.max_concurrency == 1
    assert set(METHOD_PACKAGES) == {"none", "torchao", "bnb", "gptq", "awq", "compressed_tensors"}
    assert HFConfig().model_format() is ModelFormat.hf
    assert HFConfig().engine() is Engine.transformers
    policy = HFConfig().memory_policy()
    assert policy.load_transient and policy.host_base_bytes == 280 * 2**20


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("compute_dtype", "fp8", r"runtime\.compute_dtype='fp8': choose one of f32, bf16, f16"),
        ("group_size", 100, r"runtime\.group_size=100: choose one of 32, 64, 128, 256"),
        ("attn_implementation", "flash", r"attn_implementation='flash': choose one of sdpa"),
        ("n_threads", 0, r"runtime\.n_threads=0 must be >= 1"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HFConfig(**{field: value})  # type: ignore[arg-type]


def test_converted_checkpoint_is_bf16_smollm2(hf_checkpoint: Path) -> None:
    d = describe_checkpoint(hf_checkpoint)
    assert d["n_params"] == 134_515_008  # tied embeddings stored once
    assert d["tensor_types"] == {"BF16": 134_515_008}
    assert d["file_type"] == "BF16"
    assert d["bpw"] == 16.0
    assert d["quantization"] is None
    names = {p.name for p in hf_checkpoint.iterdir()}
    assert {"chat_template.jinja", "tokenizer.json", "generation_config.json"} <= names
    # token ids only: nothing that generate() would warn about
    gen = json.loads((hf_checkpoint / "generation_config.json").read_text())
    assert set(gen) == {"bos_token_id", "eos_token_id", "pad_token_id", "transformers_version"}


CASES = {
    "none-f32": ("none", "f32", {}, "Tensor(float32) x273"),
    "none-bf16": ("none", "bf16", {}, "Tensor(bfloat16) x273"),
    "torchao-int8": ("torchao", "int8", {}, "Int8Tensor x210"),
    # 576-wide layers: 64-groups (128 does not divide 576)
    "torchao-int4": ("torchao", "int4", {"group_size": 64}, "IntxUnpackedToInt8Tensor x210"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exact_length_streamed_and_batched(hf_checkpoint: Path, case: str) -> None:
    method, precision, config, weights = CASES[case]
    runner = make(hf_checkpoint, method, precision, **config)
    runner.load()
    try:
        ids = tuple(runner.tokenize(PROMPT))
        assert ids == PROMPT_IDS
        chunks = list(runner.stream(Request(ids, N)))
        assert len(chunks) == N  # one chunk per token, as produced
        assert all(type(t) is int for c in chunks for t in c)
        tokens = [t for c in chunks for t in c]
        batch = runner.generate([Request(ids, N), Request(ids[:3], N - 3)])
        assert [len(b) for b in batch] == [N, N - 3]
        versions = runner.versions()
        assert versions["torch"].startswith("2.")
        assert versions["transformers"].startswith("5.")
        assert weights in versions["hf.weight_classes"]
        assert versions["hf.torch_threads"] == "2"
        assert runner.counters() == {}
        if method == "torchao":
            assert versions["torchao"]
            assert (
                precision == "int4" or "Int8WeightOnlyConfig" in versions["hf.quantization_config"]
            )
        if precision == "int4":
            assert "unpacked in int8" in versions["hf.note"]  # the bytes are not 4-bit
        if precision == "f32":  # left padding and its mask leave the first row as it was
            assert batch[0] == tokens
    finally:
        runner.close()


def test_bf16_greedy_stream_equals_generate(bf16: HFRunner) -> None:
    request = Request(PROMPT_IDS, 16)
    first = [t for c in bf16.stream(request) for t in c]
    second = [t for c in bf16.stream(request) for t in c]
    assert len(first) == 16
    assert first == second  # greedy, and a fresh cache each call
    assert bf16.generate([request]) == [first]


def test_tokenize_is_the_tokenizers_own(bf16: HFRunner, hf_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_checkpoint)
    text = "Once upon a time, in a land far away"
    assert bf16.tokenize(text) == tok(text, add_special_tokens=True)["input_ids"]


def test_generation_settings_match_llama_cpp_wording(bf16: HFRunner) -> None:
    s = bf16.generation_settings()
    assert s["chat_template"] == "none (raw prompt)"
    assert s["sampling"] == "greedy"
    assert s["eos"] == "masked until max_new_tokens"
    assert s["prefix_cache"] == "off"
    assert s["special_tokens"] == "none added"
    assert s["max_new_tokens"] == "per request"


def test_stream_stopped_early_leaves_the_runner_usable(bf16: HFRunner) -> None:
    stream = bf16.stream(Request(PROMPT_IDS, 50))
    assert len(next(stream)) == 1
    stream.close()  # aborts generate at its next token instead of running all 50
    assert len([t for c in bf16.stream(Request(PROMPT_IDS, 3)) for t in c]) == 3


def test_stream_reraises_what_generate_raised(
    bf16: HFRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(**kwargs: object) -> None:
        raise MemoryError("out of memory in generate")

    monkeypatch.setattr(bf16.model, "generate", boom)
    with pytest.raises(MemoryError, match="out of memory in generate"):
        list(bf16.stream(Request(PROMPT_IDS, 4)))


def test_bnb_on_cpu_refused_before_loading(tmp_path: Path) -> None:
    runner = make(tmp_path / "no-such-checkpoint", "bnb", "nf4")
    with pytest.raises(RuntimeError, match=r"method=bnb \(bitsandbytes\) runs on CUDA only"):
        runner.load()
    assert runner._model is None


def test_unsupported_precision_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"precision='q4_k_m' with method=torchao: choose one of"):
        make(tmp_path, "torchao", "q4_k_m").load()


def test_cuda_quantization_configs_are_built_as_documented() -> None:
    """The CUDA-only configs, built without a GPU (loading them needs one)."""
    import torch

    from runners.hf_quant import quantization_config

    int4 = quantization_config("torchao", "int4", "cuda", "bf16", 64).quant_type
    assert type(int4).__name__ == "Int4WeightOnlyConfig"
    assert (int4.group_size, int4.int4_packing_format) == (64, "tile_packed_to_4d")
    nf4 = quantization_config("bnb", "nf4", "cuda", "f16", 128)
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4"
    assert nf4.bnb_4bit_use_double_quant and nf4.bnb_4bit_compute_dtype == torch.float16
    assert quantization_config("bnb", "int8", "cuda", "bf16", 128).load_in_8bit
    with pytest.raises(ValueError, match=r"torchao int4 on CUDA \(tinygemm\) needs bf16"):
        HFRunner(
            HFConfig(compute_dtype="f16"), LoadSpec(Path("x"), "cuda", 2, "torchao", "int4")
        ).load()


def test_int4_group_size_must_divide_the_layers(hf_checkpoint: Path) -> None:
    runner = make(hf_checkpoint, "torchao", "int4", group_size=128)
    with pytest.raises(ValueError, match=r"group_size=128 does not divide .*hidden_size=576"):
        runner.load()


def _checkpoint(tmp_path: Path, quantization: dict[str, object] | None) -> Path:
    config: dict[str, object] = {"model_type": "llama"}
    if quantization is not None:
        config["quantization_config"] = quantization
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(
    ("method", "precision", "quantization", "message"),
    [
        ("gptq", "int4", {"quant_method": "awq", "bits": 4}, r"quant_method='awq'"),
        ("awq", "native", None, r"has no quantization_config"),
        ("gptq", "int8", {"quant_method": "gptq", "bits": 4}, r"stores 4-bit weights"),
        (
            "compressed_tensors",
            "int4",
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8}}},
            },
            r"stores 8-bit weights",
        ),
    ],
)
def test_prequantized_checkpoint_must_match_the_cell(
    tmp_path: Path,
    method: str,
    precision: str,
    quantization: dict[str, object] | None,
    message: str,
) -> None:
    runner = make(_checkpoint(tmp_path, quantization), method, precision)
    with pytest.raises(RuntimeError, match=message):
        runner.load()


def test_prequantized_needs_its_library(tmp_path: Path) -> None:
    from importlib import metadata

    try:
        metadata.version("gptqmodel")
        pytest.skip("gptqmodel is installed")
    except metadata.PackageNotFoundError:
        pass
    runner = make(_checkpoint(tmp_path, {"quant_method": "gptq", "bits": 4}), "gptq", "int4")
    with pytest.raises(RuntimeError, match=r"needs the gptqmodel package: pip install gptqmodel"):
        runner.load()


def test_close_is_idempotent(hf_checkpoint: Path) -> None:
    runner = make(hf_checkpoint, "none", "native")
    runner.close()  # before load: nothing to free
    runner.load()
    assert runner.versions()["hf.dtype"] == "bfloat16"  # the checkpoint's own dtype
    runner.close()
    runner.close()
    with pytest.raises(RuntimeError, match=r"before load\(\)"):
        list(runner.stream(Request(PROMPT_IDS, 2)))


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("method", "precision"), [("none", "bf16"), ("torchao", "int4"), ("bnb", "nf4")]
)
def test_cuda_paths(hf_checkpoint: Path, method: str, precision: str) -> None:
    if method == "bnb":
        pytest.importorskip("bitsandbytes")
    runner = HFRunner(
        HFConfig(group_size=64), LoadSpec(hf_checkpoint, "cuda", 2, method, precision)
    )
    runner.load()
    try:
        assert [len(r) for r in runner.generate([Request(PROMPT_IDS, N)] * 2)] == [N, N]
        assert len([t for c in runner.stream(Request(PROMPT_IDS, N)) for t in c]) == N
        peaks = runner.counters()
        assert peaks["torch_cuda_max_allocated_peak_bytes"] > 0
        assert (
            peaks["torch_cuda_max_reserved_peak_bytes"]
            >= peaks["torch_cuda_max_allocated_peak_bytes"]
        )
        assert runner.versions()["gpu"]
    finally:
        runner.close()

"""The llama.cpp adapter against the real runtime and the real SmolLM2-135M file."""

from pathlib import Path

import pytest

from harness.artifacts.cache import ArtifactCache
from harness.artifacts.gguf_file import read_table
from harness.artifacts.quantize import materialize, plan
from runners import LoadSpec, Request, get_runner
from runners.llama_cpp import FTYPES, LlamaCppConfig

pytestmark = pytest.mark.slow


def test_ftypes_match_llama_h() -> None:
    import llama_cpp

    for name, value in FTYPES.items():
        const = "LLAMA_FTYPE_ALL_F32" if name == "f32" else f"LLAMA_FTYPE_MOSTLY_{name.upper()}"
        assert getattr(llama_cpp, const) == value, name


def test_importing_runners_imports_no_runtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, runners, harness.cli; runners.get_runner('llama_cpp'); "
        "print('llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def q8_path(smollm2: Path, model_cache: Path) -> Path:
    steps = plan("gguf", "q8_0", "smollm2-test", read_table(smollm2))
    info = materialize(steps, smollm2, ArtifactCache(model_cache), threads=2)
    return Path(info.path)


def test_q8_0_file_is_really_q8_0(q8_path: Path) -> None:
    t = read_table(q8_path)
    assert t.file_type == "MOSTLY_Q8_0"
    assert set(t.params_by_type) == {"F32", "Q8_0"}
    assert t.bpw == pytest.approx(8.5, abs=0.02)


def test_q2_k_names_lie(smollm2: Path, model_cache: Path) -> None:
    steps = plan("gguf", "q2_k", "smollm2-test", read_table(smollm2))
    t = read_table(Path(materialize(steps, smollm2, ArtifactCache(model_cache), threads=2).path))
    assert t.file_type == "MOSTLY_Q2_K"
    assert "Q4_0" in t.params_by_type  # 576-wide rows cannot hold 256-blocks: q2_k falls back
    assert t.bpw > 4.0


def test_stream_yields_exactly_the_forced_length_greedily(q8_path: Path) -> None:
    cls = get_runner("llama_cpp")
    runner = cls(LlamaCppConfig(n_ctx=256), LoadSpec(q8_path, "cpu", 2))
    runner.load()
    try:
        ids = tuple(runner.tokenize("The capital of France is"))
        assert len(ids) == 5  # SmolLM2's GGUF says add_bos_token=false
        request = Request(prompt_ids=ids, max_new_tokens=40)
        first = [t for chunk in runner.stream(request) for t in chunk]
        second = [t for chunk in runner.stream(request) for t in chunk]
        assert len(first) == 40  # EOS never ends a stream early
        assert first == second  # greedy, and the cache reset does not change the result
        assert runner.generate([request]) == [first]
        with pytest.raises(ValueError, match=r"exceeds runtime\.n_ctx=256"):
            list(runner.stream(Request(prompt_ids=ids, max_new_tokens=300)))
        versions = runner.versions()
        assert versions["llama_cpp_python"] == "0.3.36"
        assert "CPU :" in versions["llama_cpp.system_info"]
    finally:
        runner.close()
        runner.close()  # idempotent


def test_kv_cache_types_are_config_and_checked_up_front() -> None:
    with pytest.raises(ValueError, match=r"runtime.type_k='q3_k' is invalid; choose one of: f32"):
        LlamaCppConfig(type_k="q3_k")
    with pytest.raises(ValueError, match=r"type_v=q8_0 \(a quantized V cache\) needs .*flash_attn"):
        LlamaCppConfig(type_v="q8_0")
    LlamaCppConfig(type_k="q8_0", type_v="q8_0", flash_attn=True)  # valid


def test_quantized_kv_cache_really_runs(q8_path: Path) -> None:
    import llama_cpp

    from runners.llama_cpp import KV_TYPES

    assert KV_TYPES["q8_0"] == llama_cpp.GGML_TYPE_Q8_0
    assert KV_TYPES["q4_0"] == llama_cpp.GGML_TYPE_Q4_0
    config = LlamaCppConfig(n_ctx=256, type_k="q8_0", type_v="q8_0", flash_attn=True)
    runner = get_runner("llama_cpp")(config, LoadSpec(q8_path, "cpu", 2))
    runner.load()
    try:
        ids = tuple(runner.tokenize("The capital of France is"))
        out = runner.generate([Request(prompt_ids=ids, max_new_tokens=16)])
        assert len(out[0]) == 16
        assert runner.versions()["llama_cpp.kv_types"] == "k=q8_0 v=q8_0"
        settings = runner.generation_settings()
        assert settings["special_tokens"] == "none added"  # SmolLM2's GGUF adds no BOS
        assert settings["eos"] == "generated and continued past"
    finally:
        runner.close()

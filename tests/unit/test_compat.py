from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.compat import skip_reason
from harness.config import register_configs
from harness.plan import to_typed

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def reason(*overrides: str) -> str | None:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return skip_reason(to_typed(compose("config", overrides=list(overrides))))


@pytest.mark.parametrize("precision", ["f16", "q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"])
def test_gguf_precisions_run_on_llama_cpp(precision: str) -> None:
    assert reason(f"precision={precision}") is None


def test_fp8_on_llama_cpp_is_skipped_with_reason() -> None:
    r = reason("precision=fp8")
    assert r is not None and r.startswith("runtime llama_cpp does not run precision fp8 (runs: ")


def test_method_none_runs_only_the_native_checkpoint() -> None:
    assert reason("method=none", "precision=native") is None
    assert reason("method=none", "precision=q4_k_m") == (
        "method none cannot produce precision q4_k_m (it produces: native)"
    )


def test_gguf_method_cannot_produce_nf4() -> None:
    assert reason("precision=nf4") == (
        "runtime llama_cpp does not run precision nf4 (runs: bf16, f16, f32, iq4_nl, iq4_xs, "
        "native, q2_k, q3_k_l, q3_k_m, q3_k_s, q4_0, q4_1, q4_k_m, q4_k_s, q5_0, q5_1, "
        "q5_k_m, q5_k_s, q6_k, q8_0)"
    )

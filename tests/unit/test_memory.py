"""The memory arithmetic against the issue's checked numbers (computed by hand from the models'
published configs)."""

import pytest

from harness.feasibility.memory import (
    GIB,
    Architecture,
    FitStatus,
    fit,
    kv_bytes_per_token,
    kv_cache_bytes,
    raw_weight_bytes,
    weight_bytes,
)

# Llama-3.1-70B config.json: 80 layers, hidden 8192, 64 heads, 8 KV heads, head_dim 128,
# intermediate 28672, vocab 128256, untied embeddings, 131072 positions.
LLAMA_70B = Architecture(80, 8192, 64, 8, 128, 28672, 128256, 131072, False)
# SmolLM2-135M config.json: 30 layers, hidden 576, 9 heads, 3 KV heads, head_dim 64,
# intermediate 1536, vocab 49152, tied embeddings, 8192 positions.
SMOLLM2_135M = Architecture(30, 576, 9, 3, 64, 1536, 49152, 8192, True)


def test_parameter_counts_match_the_published_sizes() -> None:
    assert LLAMA_70B.embedding_params == 2 * 128256 * 8192  # 2.101 B, untied
    assert LLAMA_70B.params == pytest.approx(70.554e9, rel=1e-4)
    assert SMOLLM2_135M.params == pytest.approx(134.5e6, rel=1e-3)


def test_raw_four_bit_weights_of_70e9_params() -> None:
    assert raw_weight_bytes(70e9, 4) / GIB == pytest.approx(32.596, abs=1e-3)


def test_llama_70b_kv_cache_per_token_and_at_128k() -> None:
    assert kv_bytes_per_token(LLAMA_70B, "f16") == 320 * 1024
    assert kv_bytes_per_token(LLAMA_70B, "fp8") == 160 * 1024
    assert kv_cache_bytes(LLAMA_70B, "f16", 131072) == 40 * GIB
    assert kv_cache_bytes(LLAMA_70B, "fp8", 131072) == 20 * GIB
    assert kv_bytes_per_token(LLAMA_70B, "q8_0") == 170 * 1024  # 34-byte blocks of 32


def test_real_four_bit_checkpoints_are_37_to_40_gib() -> None:
    assert weight_bytes(LLAMA_70B, 4.156) / GIB == pytest.approx(37.0, abs=0.1)  # GPTQ g128
    assert weight_bytes(LLAMA_70B, 4.125) / GIB == pytest.approx(36.8, abs=0.1)  # W4A16 g128
    assert weight_bytes(LLAMA_70B, 16.0) / GIB == pytest.approx(131.4, abs=0.1)


def test_70b_at_4_bits_needs_offload_on_24_gb_and_fits_80_gb() -> None:
    weights = weight_bytes(LLAMA_70B, 4.156)
    kv = kv_bytes_per_token(LLAMA_70B, "f16")
    emb = LLAMA_70B.embedding_params * 2.0
    small = fit(weights, kv, 8192, 80, 24e9, overhead=1 * GIB, non_layer_weights=emb)
    assert small.status is FitStatus.offload and 0 < small.gpu_layers < 80
    assert small.headroom_bytes < 0
    big = fit(weights, kv, 8192, 80, 80e9, overhead=1 * GIB, non_layer_weights=emb)
    assert big.status is FitStatus.fits and big.gpu_layers == 80
    assert big.headroom_bytes == pytest.approx(80e9 - weights - 2.5 * GIB - GIB)
    # the largest KV that fits beside the weights and the overhead
    assert big.max_tokens == (80e9 - weights - GIB) // kv
    tiny = fit(weights, kv, 8192, 80, 4e9, overhead=1 * GIB, non_layer_weights=emb)
    assert tiny.status is FitStatus.no and tiny.gpu_layers == 0


def test_unknown_kv_dtype_and_bad_architecture_are_named() -> None:
    with pytest.raises(ValueError, match="kv dtype 'fp4' is unknown; choose one of: f32"):
        kv_bytes_per_token(LLAMA_70B, "fp4")
    with pytest.raises(ValueError, match="kv_heads"):
        Architecture(80, 8192, 64, 0, 128, 28672, 128256, 131072, False)
    with pytest.raises(ValueError, match="not a multiple of kv_heads=7"):
        Architecture(80, 8192, 64, 7, 128, 28672, 128256, 131072, False)

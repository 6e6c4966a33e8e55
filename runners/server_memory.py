"""How a launched OpenAI-compatible server takes memory, per launch profile (for the fit
planner); a server launched elsewhere (``launch: null``) is not this machine's to predict."""

from __future__ import annotations

from runners.base import MemoryPolicy
from runners.server_launch import ServerLaunchConfig

# vLLM's default max_num_batched_tokens for the API server on data-center GPUs (V1 engine):
# the size of the forward pass it profiles for activation memory at startup.
VLLM_BATCHED_TOKENS = 8192
# vLLM's --kv-cache-dtype values and the element type each stores (auto: the model's dtype).
KV_CACHE_DTYPES: dict[str, str | None] = {
    "auto": None,
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}


def check_kv_cache_dtype(value: str) -> None:
    if value not in KV_CACHE_DTYPES:
        raise ValueError(
            f"runtime.kv_cache_dtype={value!r} is invalid; choose one of: "
            f"{', '.join(KV_CACHE_DTYPES)}"
        )


def server_memory_policy(c: ServerLaunchConfig) -> MemoryPolicy | None:
    """What the launched server takes; a server launched elsewhere is not predicted."""
    if c.launch in ("llama_cpp_python", "llama_server"):
        return MemoryPolicy(
            engine="llama.cpp",
            context=c.n_ctx,  # llama-server: all slots share these cells
            sequences=1,
            kv_dtypes=("f16", "f16"),
            batch_tokens=c.n_ubatch,
            gpu_layers=c.n_gpu_layers,
            flash_attn=c.flash_attn,
        )
    stored = KV_CACHE_DTYPES.get(c.kv_cache_dtype)
    kv = None if stored is None else (stored, stored)
    if c.launch == "vllm":  # one max_model_len sequence must fit beside the weights
        return MemoryPolicy(
            engine="vllm",
            context=c.max_model_len,
            sequences=1,
            kv_dtypes=kv,
            batch_tokens=VLLM_BATCHED_TOKENS,
            preallocate=c.gpu_memory_utilization,
            compute_dtype=None if c.dtype == "auto" else c.dtype,
        )
    if c.launch == "trtllm_serve":
        return MemoryPolicy(
            engine="tensorrt_llm",
            context=c.max_model_len,
            sequences=1,
            batch_tokens=c.max_num_tokens,
            preallocate=c.kv_cache_free_gpu_memory_fraction,
            of_free=True,
        )
    return None

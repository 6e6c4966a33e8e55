"""Documented estimates the fit planner uses where nothing exact can be read before loading.

Every number here is a stated assumption with its source; the planner's error against
measurement is logged for every cell that runs (``memory.prediction_ratio``), so a wrong
estimate shows up rather than hides. Exact figures win whenever they exist: a GGUF file's
tensor table replaces the bits-per-weight tables below.
"""

from __future__ import annotations

from typing import Final

MIB: Final = 2**20
GIB: Final = 2**30

# Whole-file bits per weight of llama.cpp file types, measured by llama.cpp on Llama-3.1-8B
# (tools/quantize/README.md; Q3_K_M from the Llama-3-8B scoreboard sizes). Used only before a
# file exists; small models come out higher (embeddings are a larger share, and rows not a
# multiple of 256 fall back to bigger types), which the file's table then shows.
GGUF_FILE_BPW: Final[dict[str, float]] = {
    "f32": 32.0,
    "f16": 16.0,
    "bf16": 16.0,
    "q8_0": 8.50,
    "q6_k": 6.56,
    "q5_k_m": 5.70,
    "q5_k_s": 5.57,
    "q5_1": 6.0,
    "q5_0": 5.5,
    "q4_k_m": 4.89,
    "q4_k_s": 4.67,
    "q4_1": 5.0,
    "q4_0": 4.5,
    "iq4_xs": 4.46,
    "iq4_nl": 4.5,
    "q3_k_l": 4.30,
    "q3_k_m": 4.00,
    "q3_k_s": 3.64,
    "q2_k": 3.16,
}

# Bits per weight of the quantized linear layers including their group scales and zeros
# (shared reference memory_and_support.md §3): GPTQ/AWQ g128 = 4 + (16 scale + 4 zero)/128
# (+ g_idx, ≤ 0.004); compressed-tensors W4A16 symmetric g128 = 4 + 16/128; bitsandbytes NF4
# with double quantization 4.127 (QLoRA, arXiv 2305.14314); per-channel int8/fp8 ≈ 8. Embeddings
# and the output head stay at 16 bits under these methods.
LINEAR_BPW: Final[dict[tuple[str, str], float]] = {
    ("gptq", "int4"): 4.156,
    ("gptq", "int8"): 8.156,
    ("awq", "int4"): 4.156,
    ("compressed_tensors", "int4"): 4.125,
    ("compressed_tensors", "int8"): 8.004,
    ("compressed_tensors", "fp8"): 8.0,
    ("bnb", "nf4"): 4.127,
    ("bnb", "int8"): 8.0,
    ("torchao", "int8"): 8.0,
}
TORCHAO_INT4_SCALE_BITS: Final = 32  # a bf16 scale and a bf16 zero point per group
DTYPE_BITS: Final[dict[str, float]] = {"f32": 32.0, "f16": 16.0, "bf16": 16.0}

# Methods that quantize while loading: the 16-bit weights are materialised first, so a CPU
# process briefly holds both (measured: torchao on SmolLM2 peaks above bf16 alone).
QUANTIZE_AT_LOAD: Final = frozenset({"torchao", "bnb"})

# A CUDA context per process: 642 MB measured on an H100 after torch's first allocation
# (shared reference §6); llama.cpp's CUDA backend creates one too.
CUDA_CONTEXT_BYTES: Final = 0.6 * GIB
# What each runtime takes beyond the math above (a server's GPU reserve, a worker's base RSS,
# llama.cpp's vocabulary tables) is the runtime's own fact: its runner declares it on its
# MemoryPolicy (runners/llama_cpp.py, runners/hf.py, runners/server_profiles.py), with the source.
# Prompts are sized before any tokenizer is loaded: about 3 characters per token, an upper
# estimate for English BPE text (typical is 4), so KV for a prompt is not underestimated.
CHARS_PER_TOKEN: Final = 3.0

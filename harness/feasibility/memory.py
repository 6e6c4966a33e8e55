"""Memory arithmetic for "will it fit": weights, KV cache, overhead, fit and headroom (pure).

Definitions (GiB = 2³⁰ bytes; bpw = bits per weight; docs: shared reference
memory_and_support.md §3-§6):

- parameters of a dense decoder from its architecture: embeddings (vocab × hidden, twice when
  the output head is not tied) + per layer the attention projections (q and o: hidden × heads ×
  head_dim each; k and v: hidden × kv_heads × head_dim each), the gated MLP (3 × hidden ×
  intermediate) and two RMSNorm vectors, + the final norm;
- weight bytes = embedding parameters × embedding bits / 8 + the other parameters × bpw / 8
  (quantized checkpoints keep embeddings and the output head at 16 bits; a GGUF file's real
  bytes come from its tensor table instead, see harness/artifacts/gguf_file.py);
- KV cache bytes = 2 (K and V) × layers × kv_heads × head_dim × bits(kv dtype) / 8 × tokens ×
  concurrent sequences;
- need = weights + KV + activations/workspace + runtime overhead; a cell fits when need ≤ the
  device's usable bytes, fits with offload when the non-layer part plus some whole layers fit
  (the rest stay on the host), and does not fit otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

GIB: Final = 2**30

# Bits per stored KV element (llama.cpp block types carry their scales: q8_0 = 34 B / 32).
KV_BITS: Final[dict[str, float]] = {
    "f32": 32.0,
    "f16": 16.0,
    "bf16": 16.0,
    "fp8": 8.0,
    "q8_0": 8.5,
    "q5_1": 6.0,
    "q5_0": 5.5,
    "q4_1": 5.0,
    "q4_0": 4.5,
    "iq4_nl": 4.5,
}


@dataclass(frozen=True, slots=True)
class Architecture:
    """The numbers the memory math needs, from a model's published config.json."""

    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    tied_embeddings: bool

    def __post_init__(self) -> None:
        for name in ("layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"model architecture {name}={getattr(self, name)} must be >= 1")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def layer_params(self) -> int:
        h, d = self.hidden_size, self.head_dim
        attention = 2 * h * self.heads * d + 2 * h * self.kv_heads * d
        return attention + 3 * h * self.intermediate_size + 2 * h

    @property
    def params(self) -> int:
        return self.embedding_params + self.layers * self.layer_params + self.hidden_size


def kv_bits(dtype: str) -> float:
    """ValueError naming the valid choices for an unknown KV dtype (never a silent default)."""
    if dtype not in KV_BITS:
        raise ValueError(f"kv dtype {dtype!r} is unknown; choose one of: {', '.join(KV_BITS)}")
    return KV_BITS[dtype]


def kv_bytes_per_token(arch: Architecture, dtype: str, v_dtype: str | None = None) -> float:
    """K at ``dtype`` and V at ``v_dtype`` (default: the same), for every layer's KV heads."""
    bits = kv_bits(dtype) + kv_bits(v_dtype or dtype)
    return arch.layers * arch.kv_heads * arch.head_dim * bits / 8


def kv_cache_bytes(arch: Architecture, dtype: str, context: int, sequences: int = 1) -> float:
    return kv_bytes_per_token(arch, dtype) * context * sequences


def raw_weight_bytes(params: float, bits: float) -> float:
    """What a name like "70B 4-bit" promises: a lower bound (no scales, no 16-bit embeddings)."""
    return params * bits / 8


def weight_bytes(arch: Architecture, bpw: float, embedding_bits: float = 16.0) -> float:
    """Embeddings (and an untied output head) at ``embedding_bits``, the rest at ``bpw``."""
    emb = arch.embedding_params
    return emb * embedding_bits / 8 + (arch.params - emb) * bpw / 8


class FitStatus(StrEnum):
    fits = "fits"
    offload = "fits with offload"
    no = "does not fit"


@dataclass(frozen=True, slots=True)
class Fit:
    status: FitStatus
    need_bytes: float  # weights + KV + activations + overhead, all on the device
    usable_bytes: float
    headroom_bytes: float  # usable − need (negative: short by that much)
    gpu_layers: int  # layers resident on the device (all of them when it fits)
    max_tokens: int  # KV tokens (context × sequences) that fit beside everything else


def fit(
    weights: float,
    kv_per_token: float,
    tokens: int,
    layers: int,
    usable: float,
    activations: float = 0.0,
    overhead: float = 0.0,
    non_layer_weights: float = 0.0,
) -> Fit:
    """Place weights, KV for ``tokens`` and the fixed costs in ``usable`` bytes; with offload
    each layer takes its share of weights and KV and ``non_layer_weights`` stays resident."""
    need = weights + kv_per_token * tokens + activations + overhead
    spare = usable - weights - activations - overhead
    max_tokens = max(0, math.floor(spare / kv_per_token)) if kv_per_token > 0 else 0
    if need <= usable:
        return Fit(FitStatus.fits, need, usable, usable - need, layers, max_tokens)
    per_layer = (weights - non_layer_weights + kv_per_token * tokens) / layers
    room = usable - non_layer_weights - activations - overhead
    on_gpu = max(0, min(layers - 1, math.floor(room / per_layer))) if per_layer > 0 else 0
    status = FitStatus.offload if on_gpu > 0 else FitStatus.no
    return Fit(status, need, usable, usable - need, on_gpu, max_tokens)

"""Predict a cell's memory before it loads: weights, KV cache, activations, overhead, fit.

Pure functions of the typed config (and a GGUF tensor table when the file exists). One
definition, used by ``plan=true``, by pruning and by the logged prediction of every run:

- weights: the GGUF file's tensor bytes when there is a file; otherwise parameters from the
  architecture × bits per weight of the method (harness/feasibility/estimates.py),
  embeddings at 16 bits for methods that keep them there;
- KV cache: K and V bits × layers × kv_heads × head_dim × tokens reserved, where the runtime's
  memory policy says how many tokens it reserves (llama.cpp: n_ctx; vLLM / TensorRT-LLM: at
  least one max_model_len sequence; transformers: the workload's prompt + output × sequences);
- activations: the widest live tensors of one forward pass of ``batch_tokens`` tokens plus the
  fp32 logit rows (and llama.cpp's attention scores without flash attention);
- overhead: a CUDA context and the engine's own reserve on a GPU; the worker process and
  llama.cpp's vocabulary tables on a CPU (where the prediction is the process's peak RSS).

The device's usable bytes are the hardware profile's memory (times vLLM's
gpu_memory_utilization); offload places whole layers on the GPU when the runtime can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import psutil

from harness.config.errors import UserError
from harness.config.schema import Device, HarnessConfig, LoadMode
from harness.feasibility.estimates import (
    CHARS_PER_TOKEN,
    CUDA_CONTEXT_BYTES,
    DTYPE_BITS,
    GGUF_FILE_BPW,
    GIB,
    LINEAR_BPW,
    QUANTIZE_AT_LOAD,
    TORCHAO_INT4_SCALE_BITS,
)
from harness.feasibility.memory import (
    Architecture,
    Fit,
    FitStatus,
    fit,
    kv_bytes_per_token,
    weight_bytes,
)
from runners import MemoryPolicy

NO_FIT = "predicted not to fit"  # how a memory skip reason starts


@dataclass(frozen=True, slots=True)
class Footprint:
    weights: float
    weights_source: str  # "gguf tensor table" or the estimate used
    kv: float
    kv_tokens: int
    kv_dtype: str  # "k/v"
    activations: float
    overhead: float
    usable: float  # bytes the runtime may use on the device (or host for a CPU cell)
    fit: Fit
    reserved: float | None  # what a preallocating runtime takes regardless of need
    where: str  # "gpu" or "host"
    offload_layers: int | None = None  # fits only with this many layers on the GPU
    layers: int = 0

    @property
    def need(self) -> float:
        return self.fit.need_bytes

    @property
    def predicted_peak(self) -> float:
        """What a memory monitor should see: the reservation of a preallocating runtime."""
        return self.reserved if self.reserved is not None else self.need

    def skip_reason(self, hardware: str) -> str | None:
        """Why the cell cannot run as configured; None when it fits."""
        f = self.fit
        if f.status is FitStatus.fits:
            return None
        short = (f.need_bytes - f.usable_bytes) / GIB
        base = (
            f"{NO_FIT} {hardware}: needs {f.need_bytes / GIB:.1f} GiB "
            f"(weights {self.weights / GIB:.1f} + KV {self.kv / GIB:.1f} for {self.kv_tokens} "
            f"tokens + other {(self.activations + self.overhead) / GIB:.1f}) of "
            f"{f.usable_bytes / GIB:.1f} GiB usable, {short:.1f} GiB short"
        )
        if self.offload_layers:
            return (
                f"{base}; it fits with runtime.n_gpu_layers={self.offload_layers} of "
                f"{self.layers} (the rest on the host)"
            )
        return base


def architecture(cfg: HarnessConfig) -> Architecture:
    arch = cfg.model.architecture
    if arch is None:
        raise UserError(
            f"model {cfg.model.name} has no architecture; the memory plan needs "
            "model.architecture.{layers,hidden_size,heads,kv_heads,head_dim,"
            "intermediate_size,vocab_size,max_context,tied_embeddings}"
        )
    try:  # the config's fields minus dtype, converted once here
        return Architecture(**{f.name: getattr(arch, f.name) for f in fields(Architecture)})
    except ValueError as e:
        raise UserError(f"model {cfg.model.name}: {e}") from None


def usable_bytes(cfg: HarnessConfig) -> float:
    hw = cfg.hardware
    if hw.memory_gb is not None:
        return hw.memory_gb * GIB
    if hw.detect_memory and hw.device is Device.cpu:
        return float(psutil.virtual_memory().total)
    raise UserError(
        f"hardware profile {hw.name!r} has no memory size; set hardware.memory_gb (GiB of "
        "device memory, as nvidia-smi reports it)"
        + (" or hardware.detect_memory=true" if hw.device is Device.cpu else "")
    )


def compute_dtype(cfg: HarnessConfig, policy: MemoryPolicy) -> str:
    """The dtype of unquantized tensors, activations and (by default) the KV cache."""
    precision = cfg.precision.name
    if cfg.method.name == "none" and precision in DTYPE_BITS:
        return precision
    if policy.compute_dtype is not None:
        return policy.compute_dtype
    arch = cfg.model.architecture
    return arch.dtype if arch is not None else "bf16"


def weight_estimate(cfg: HarnessConfig, arch: Architecture, dtype: str) -> tuple[float, str]:
    method, precision = cfg.method.name, cfg.precision.name
    if method == "gguf":
        bpw = GGUF_FILE_BPW.get(precision)
        if bpw is None:
            raise UserError(f"no bits-per-weight estimate for {method} {precision}")
        return arch.params * bpw / 8, f"estimate: {bpw:g} bpw (llama.cpp file average)"
    if method == "none" and precision not in DTYPE_BITS:  # as published: the model's dtype
        bits = DTYPE_BITS.get(dtype, 16.0)
        return arch.params * bits / 8, f"{dtype} as published: {bits:g} bpw"
    if method == "none":
        bits = DTYPE_BITS[precision]
        return arch.params * bits / 8, f"{precision}: {bits:g} bpw"
    if (method, precision) == ("torchao", "int4"):
        bpw = 4 + TORCHAO_INT4_SCALE_BITS / int(getattr(cfg.runtime, "group_size", 128))
    elif (method, precision) in LINEAR_BPW:
        bpw = LINEAR_BPW[(method, precision)]
    else:
        raise UserError(f"no bits-per-weight estimate for {method} {precision}")
    emb_bits = DTYPE_BITS.get(dtype, 16.0)
    return weight_bytes(
        arch, bpw, emb_bits
    ), f"estimate: {bpw:.3f} bpw linears, embeddings {emb_bits:g}-bit"


def workload_tokens(cfg: HarnessConfig) -> tuple[int, int]:
    """(tokens per sequence, sequences at once) the workload needs."""
    w = cfg.workload
    prompt = w.input_tokens or math.ceil(max(len(p) for p in w.prompts) / CHARS_PER_TOKEN)
    if w.mode is LoadMode.closed_loop:
        sequences = w.concurrency
    elif w.mode is LoadMode.offline:
        sequences = w.requests_per_repetition
    else:
        sequences = w.max_concurrency or w.concurrency
    return prompt + w.max_new_tokens, sequences


def activation_bytes(
    arch: Architecture, tokens: int, rows: int, bytes_per: float, context: int, flash: bool
) -> float:
    """One forward pass of ``tokens``: hidden states and the gated MLP's live tensors, fp32
    logits for ``rows`` positions, and the attention scores when they are materialised."""
    live = tokens * (4 * arch.hidden_size + 3 * arch.intermediate_size) * bytes_per
    scores = 0.0 if flash else tokens * context * arch.heads * 4.0
    return live + rows * arch.vocab_size * 4.0 + scores


def predict(cfg: HarnessConfig, exact_weights: float | None = None) -> Footprint | None:
    """The cell's footprint; None when its runtime's memory is not predictable here (a server
    launched elsewhere, the synthetic runner). UserError for a config the math cannot use."""
    policy = cfg.runtime.memory_policy()
    if policy is None:
        return None
    arch = architecture(cfg)
    usable = usable_bytes(cfg)
    dtype = compute_dtype(cfg, policy)
    if exact_weights is not None:
        weights, source = exact_weights, "gguf tensor table"
    else:
        weights, source = weight_estimate(cfg, arch, dtype)
    k, v = policy.kv_dtypes or (dtype, dtype)
    try:
        kv_per_token = kv_bytes_per_token(arch, k, v)
    except ValueError as e:
        raise UserError(f"runtime {cfg.runtime.name}: {e}") from None
    per_seq, sequences = workload_tokens(cfg)
    context = policy.context or (arch.max_context if policy.preallocate else per_seq)
    kv_tokens = context * (policy.sequences or sequences)
    gpu = cfg.hardware.device is Device.cuda
    act_bytes = policy.activation_bytes or DTYPE_BITS.get(dtype, 16.0) / 8
    batch = policy.batch_tokens or per_seq * sequences
    if gpu:
        activations = activation_bytes(
            arch,
            batch,
            _logit_rows(policy, batch, sequences),
            act_bytes,
            context,
            policy.flash_attn,
        )
        overhead = CUDA_CONTEXT_BYTES + policy.gpu_reserve_bytes
    else:
        # host RSS counts touched pages: the workload's prompt, one logit row per sequence
        touched = min(batch, per_seq * sequences)
        activations = activation_bytes(arch, touched, sequences, act_bytes, context, True)
        overhead = policy.host_base_bytes + policy.host_bytes_per_vocab * arch.vocab_size
        if policy.load_transient:
            overhead += load_transient(cfg, arch)
    parts = _Parts(weights, source, kv_per_token, kv_tokens, f"{k}/{v}", activations, overhead)
    return _place(cfg, policy, arch, usable, parts)


def _logit_rows(policy: MemoryPolicy, batch: int, sequences: int) -> int:
    """fp32 logit rows of one forward pass on a GPU (see ``MemoryPolicy.logit_rows``)."""
    if policy.logit_rows is None:
        return min(batch, sequences)
    return batch if policy.logit_rows == 0 else min(batch, policy.logit_rows)


def load_transient(cfg: HarnessConfig, arch: Architecture) -> float:
    """Extra host memory while transformers loads on a CPU: the memory-mapped 16-bit
    checkpoint, and for a method that quantizes at load the 16-bit model it starts from."""
    checkpoint = arch.params * 2.0
    return checkpoint * (2 if cfg.method.name in QUANTIZE_AT_LOAD else 1)


@dataclass(frozen=True, slots=True)
class _Parts:
    weights: float
    source: str
    kv_per_token: float
    kv_tokens: int
    kv_dtype: str
    activations: float
    overhead: float


def _place(
    cfg: HarnessConfig, policy: MemoryPolicy, arch: Architecture, usable: float, p: _Parts
) -> Footprint:
    gpu = cfg.hardware.device is Device.cuda
    reserved = None
    limit = usable
    if gpu and policy.preallocate is not None and not policy.of_free:
        limit = usable * policy.preallocate  # vLLM: a cap on the instance's total memory
        reserved = limit
    on_device = p.weights
    if gpu and policy.offloads_layers and policy.gpu_layers not in (None, -1):
        on_device = p.weights * min(policy.gpu_layers or 0, arch.layers) / arch.layers
    result = fit(
        on_device,
        p.kv_per_token,
        p.kv_tokens,
        arch.layers,
        limit,
        activations=p.activations,
        overhead=p.overhead,
        # embeddings and the output head are not layers: they stay whatever is offloaded
        non_layer_weights=p.weights * arch.embedding_params / arch.params,
    )
    fixed = p.weights + p.activations + p.overhead
    if gpu and policy.preallocate is not None and policy.of_free and fixed < usable:
        reserved = fixed + policy.preallocate * (usable - fixed)  # TRT-LLM: share of free
    offload = None
    if result.status is FitStatus.offload:
        if gpu and policy.offloads_layers:
            offload = result.gpu_layers
        result = replace(result, status=FitStatus.no)
    return Footprint(
        weights=p.weights,
        weights_source=p.source,
        kv=p.kv_per_token * p.kv_tokens,
        kv_tokens=p.kv_tokens,
        kv_dtype=p.kv_dtype,
        activations=p.activations,
        overhead=p.overhead,
        usable=limit,
        fit=result,
        reserved=reserved,
        where="gpu" if gpu else "host",
        offload_layers=offload,
        layers=arch.layers,
    )

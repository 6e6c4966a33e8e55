"""Loading helpers of the hf runner: a cell's (method, precision) turned into
``from_pretrained`` arguments and checked against the checkpoint, and the loaded weights'
real storage described.

Imports torch, transformers and the quantization libraries only inside the functions, which
the runner calls from ``load()`` and later.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

# method -> the distributions it needs besides the runner's own packages
METHOD_PACKAGES: dict[str, tuple[str, ...]] = {
    "none": (),
    "torchao": ("torchao",),
    "bnb": ("bitsandbytes",),
    "gptq": ("gptqmodel",),
    "awq": ("gptqmodel",),
    "compressed_tensors": ("compressed-tensors",),
}
# methods whose checkpoint was quantized by its library beforehand: loaded as they are
PREQUANTIZED = frozenset({"gptq", "awq", "compressed_tensors"})
GPU_ONLY = frozenset({"bnb"})
DTYPE_NAMES: dict[str, str] = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
# What torchao int4 really stores on CPU (see ``_torchao``): readers must not take it as 4-bit.
CPU_INT4_NOTE = (
    "torchao int4 on CPU: IntxWeightOnlyConfig(int4, PerGroup) keeps int4 values unpacked in "
    "int8 (8 bits per weight in memory, plus group scales)"
)


# the precisions this loader can build for the methods it applies itself (pre-quantized
# checkpoints state their own); whether a cell may run at all is the support table's answer
# (harness/feasibility/support.yaml), checked before any worker starts
BUILDS: dict[str, frozenset[str]] = {
    "none": frozenset({"native", *DTYPE_NAMES}),
    "torchao": frozenset({"int8", "int4"}),
    "bnb": frozenset({"int8", "nf4"}),
}


def check_supported(method: str, precision: str, device: str, compute_dtype: str) -> None:
    """Refuse what this loader cannot build, before anything is imported or loaded."""
    if method not in METHOD_PACKAGES:
        known = ", ".join(sorted(METHOD_PACKAGES))
        raise ValueError(f"method={method!r}: the hf runner loads {known}")
    if method in BUILDS and precision not in BUILDS[method]:
        choices = ", ".join(sorted(BUILDS[method]))
        raise ValueError(f"precision={precision!r} with method={method}: choose one of {choices}")
    if (method, precision, device) == ("torchao", "int4", "cuda") and compute_dtype != "bf16":
        raise ValueError(
            f"runtime.compute_dtype={compute_dtype}: torchao int4 on CUDA (tinygemm) needs bf16"
        )
    if method in GPU_ONLY and device != "cuda":
        raise RuntimeError(
            f"method={method} (bitsandbytes) runs on CUDA only; this cell's device is {device}"
        )


def check_packages(method: str) -> None:
    """Fail with the install command when a method's library is missing."""
    for dist in METHOD_PACKAGES[method]:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise RuntimeError(
                f"method={method} needs the {dist} package: pip install {dist}"
            ) from None


def model_dtype(method: str, precision: str, compute_dtype: str) -> torch.dtype | str:
    """The dtype ``from_pretrained`` loads in: the precision itself for method none ("auto",
    the checkpoint's own, for native), the compute dtype for the quantized methods."""
    import torch

    if method in PREQUANTIZED or (method, precision) == ("none", "native"):
        return "auto"
    dtype: torch.dtype = getattr(
        torch, DTYPE_NAMES[precision if method == "none" else compute_dtype]
    )
    return dtype


def quantization_config(
    method: str, precision: str, device: str, compute_dtype: str, group_size: int
) -> Any | None:
    """The ``quantization_config`` argument for quantize-at-load methods; None otherwise."""
    if method == "torchao":
        return _torchao(precision, device, group_size)
    if method == "bnb":
        return _bnb(precision, compute_dtype)
    return None


def _torchao(precision: str, device: str, group_size: int) -> Any:
    import torch
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quantize_.workflows import Int4PackingFormat
    from transformers import TorchAoConfig

    if precision == "int8":
        return TorchAoConfig(Int8WeightOnlyConfig())
    if device == "cuda":
        # tinygemm's packed layout (torch's own _weight_int4pack_mm, bf16 only): the default
        # "plain" packing needs the mslk kernels, which the hf extra does not install
        return TorchAoConfig(
            Int4WeightOnlyConfig(
                group_size=group_size, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D
            )
        )
    # torchao 0.18's Int4WeightOnlyConfig has no CPU path (the plain packing needs the mslk
    # kernels, plain_int32 is CUDA/XPU only, the opaque CPU layout was removed)
    int4: torch.dtype = torch.int4
    return TorchAoConfig(IntxWeightOnlyConfig(weight_dtype=int4, granularity=PerGroup(group_size)))


def _bnb(precision: str, compute_dtype: str) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=getattr(torch, DTYPE_NAMES[compute_dtype]),
        bnb_4bit_use_double_quant=True,
    )


def check_group_size(checkpoint: Path, group_size: int) -> None:
    """torchao int4 groups the input features of every linear layer: refuse a group size that
    does not divide them, before loading (SmolLM2-135M's 576 takes 32 or 64, not 128)."""
    config = json.loads((checkpoint / "config.json").read_text())
    text = config.get("text_config", config)
    heads, head_dim = text.get("num_attention_heads"), text.get("head_dim")
    widths = {
        "hidden_size": text.get("hidden_size"),
        "intermediate_size": text.get("intermediate_size"),
        "num_attention_heads*head_dim": heads * head_dim if heads and head_dim else None,
    }
    bad = {k: v for k, v in widths.items() if isinstance(v, int) and v % group_size}
    if bad:
        found = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise ValueError(
            f"runtime.group_size={group_size} does not divide this checkpoint's {found}; "
            "choose a group size that does (e.g. 32 or 64)"
        )


def check_prequantized(checkpoint: Path, method: str, precision: str) -> dict[str, Any]:
    """The checkpoint's own quantization_config, checked against the cell's method and
    precision (int4/int8 must match the stored bit width where the config states it)."""
    config = checkpoint / "config.json"
    if not config.is_file():
        raise RuntimeError(f"method={method}: {checkpoint} has no config.json")
    qc = json.loads(config.read_text()).get("quantization_config")
    if not isinstance(qc, dict):
        raise RuntimeError(
            f"method={method} loads a pre-quantized checkpoint, but {config} has no "
            "quantization_config (quantize it with the method's library first)"
        )
    found = str(qc.get("quant_method", "")).replace("-", "_")
    if found != method:
        raise RuntimeError(
            f"method={method}, but the checkpoint at {checkpoint} was quantized with "
            f"quant_method={qc.get('quant_method')!r}"
        )
    bits = _stored_bits(qc)
    if precision != "native" and bits and int(precision.removeprefix("int")) not in bits:
        raise RuntimeError(
            f"precision={precision}, but the {method} checkpoint at {checkpoint} stores "
            f"{'/'.join(str(b) for b in sorted(bits))}-bit weights"
        )
    return qc


def _stored_bits(qc: dict[str, Any]) -> set[int]:
    """Weight bit widths a quantization_config states: ``bits`` (GPTQ, AWQ) or each config
    group's ``weights.num_bits`` (compressed-tensors)."""
    if isinstance(qc.get("bits"), int):
        return {qc["bits"]}
    groups = qc.get("config_groups") or {}
    return {
        int(g["weights"]["num_bits"])
        for g in groups.values()
        if isinstance(g, dict) and isinstance(g.get("weights"), dict) and "num_bits" in g["weights"]
    }


def check_runtime() -> None:
    """Import torch and transformers, or say how to install them."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            f"the hf runner needs {e.name or 'torch and transformers'}: pip install .[hf]"
        ) from e


def weight_classes(model: PreTrainedModel) -> str:
    """How the weights are really stored: tensor class (dtype for plain tensors) -> count."""
    counts: Counter[str] = Counter()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is None or not hasattr(weight, "dtype"):
            continue
        cls = type(weight).__name__
        if cls in ("Parameter", "Tensor"):
            cls = f"Tensor({str(weight.dtype).removeprefix('torch.')})"
        counts[cls] += 1
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


@contextmanager
def no_progress_bar() -> Iterator[None]:
    """transformers' weight-loading progress bar off for one load, then as it was."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()

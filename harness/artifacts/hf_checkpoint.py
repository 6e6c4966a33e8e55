"""Hugging Face checkpoint directories: converting a GGUF file into one, and describing one.

``describe_checkpoint`` is pure: it reads the safetensors headers (an 8-byte little-endian
header length, then a JSON table name -> dtype, shape, data_offsets) and config.json, so the
parameter count and the real bits per weight come from the tensors, never from a name.
``gguf_to_hf`` imports torch and transformers, and only when it is called.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# safetensors dtype name -> bits per element (the format's dtypes; sub-byte ones are packed).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
CONVERT_DTYPES = ("f32", "f16", "bf16")
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on the JSON header size


class InvalidCheckpointError(ValueError):
    """Not a readable safetensors checkpoint directory."""


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one .safetensors file (``__metadata__`` included)."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise InvalidCheckpointError(f"{path}: too short for a safetensors header")
        (size,) = struct.unpack("<Q", raw)
        if size > _HEADER_LIMIT:
            raise InvalidCheckpointError(f"{path}: header length {size} is not plausible")
        text = f.read(size)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidCheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise InvalidCheckpointError(f"{path}: safetensors header is not a JSON object")
    return header


def describe_checkpoint(directory: Path) -> dict[str, Any]:
    """What a checkpoint directory really holds, read from its safetensors headers.

    ``file_bytes`` sums the ``*.safetensors`` files only (headers included; config and
    tokenizer files are left out); ``tensor_bytes`` sums the tensors' data ranges;
    ``bpw`` = 8 * tensor_bytes / n_params over every tensor. ``tensor_types`` maps a
    safetensors dtype to the number of elements stored in it. A pre-quantized checkpoint packs
    several weights into one I32 element, so its n_params counts stored elements, not weights.
    ``file_type`` is config.json's ``quantization_config.quant_method`` when present, else the
    dtype holding most elements (e.g. "BF16").
    """
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise InvalidCheckpointError(f"{directory}: no *.safetensors files")
    types: dict[str, int] = defaultdict(int)
    tensor_bytes = 0
    for path in files:
        for name, entry in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            tensor_bytes += int(end) - int(begin)
            types[str(entry["dtype"])] += math.prod(int(d) for d in entry["shape"])
    n_params = sum(types.values())
    quantization = _quantization_config(directory)
    return {
        "file_bytes": sum(p.stat().st_size for p in files),
        "tensor_bytes": tensor_bytes,
        "n_params": n_params,
        "bpw": 8 * tensor_bytes / n_params if n_params else 0.0,
        "tensor_types": dict(sorted(types.items())),
        "file_type": _file_type(types, quantization),
        "quantization": quantization,
        "files": [p.name for p in files],
    }


def _quantization_config(directory: Path) -> dict[str, Any] | None:
    config = directory / "config.json"
    if not config.is_file():
        return None
    qc = json.loads(config.read_text()).get("quantization_config")
    return qc if isinstance(qc, dict) else None


def _file_type(types: dict[str, int], quantization: dict[str, Any] | None) -> str:
    if quantization and quantization.get("quant_method"):
        return str(quantization["quant_method"])
    return max(types, key=lambda t: types[t]) if types else "unknown"


def gguf_to_hf(src: Path, out_dir: Path, dtype: str = "bf16") -> None:
    """Dequantize the GGUF file ``src`` into an HF checkpoint directory ``out_dir``:
    model.safetensors in ``dtype``, config.json, generation_config.json and the tokenizer
    (tokenizer.json, tokenizer_config.json, chat_template.jinja).

    transformers refuses to save a model loaded from GGUF, so the dequantized weights are
    copied into a fresh model built from the same config (minus its gguf quantization_config).
    """
    if dtype not in CONVERT_DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {', '.join(CONVERT_DTYPES)}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GgufConfig

    target = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    with _no_progress_bars():
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        # float32 is the dequantizer's own output: no rounding before the one cast below
        loaded = AutoModelForCausalLM.from_pretrained(
            src.parent,
            gguf_file=src.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(loaded.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=target)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    # only the token ids: no sampling defaults that generate() would warn about
    model.generation_config = GenerationConfig(
        bos_token_id=getattr(config, "bos_token_id", None),
        eos_token_id=getattr(config, "eos_token_id", None),
        pad_token_id=getattr(config, "pad_token_id", None),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with _no_progress_bars():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' progress bars, including the tqdm bar its GGUF dequantizer draws
    without asking transformers' own switch; both are restored on exit."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    bar = getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    if bar is not None:
        setattr(gguf_utils, "tqdm", functools.partial(bar, disable=True))  # noqa: B010
    try:
        yield
    finally:
        if bar is not None:
            setattr(gguf_utils, "tqdm", bar)  # noqa: B010
        if was_enabled:
            hf_logging.enable_progress_bar()

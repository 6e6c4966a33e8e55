"""describe_checkpoint on hand-written safetensors files (no torch needed)."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from harness.artifacts.hf_checkpoint import InvalidCheckpointError, describe_checkpoint, gguf_to_hf


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> int:
    """A safetensors file with zeroed data: name -> (dtype, shape, bytes). Returns its size."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path.stat().st_size


def test_float_checkpoint(tmp_path: Path) -> None:
    size = write_safetensors(
        tmp_path / "model.safetensors",
        {"embed.weight": ("BF16", [16, 8], 256), "norm.weight": ("F32", [8], 32)},
    )
    (tmp_path / "tokenizer.json").write_text("{}")  # not counted in file_bytes
    d = describe_checkpoint(tmp_path)
    assert d["n_params"] == 136
    assert d["tensor_bytes"] == 288
    assert d["file_bytes"] == size
    assert d["bpw"] == pytest.approx(8 * 288 / 136)
    assert d["tensor_types"] == {"BF16": 128, "F32": 8}
    assert d["file_type"] == "BF16"  # the dtype holding most parameters
    assert d["quantization"] is None
    assert d["files"] == ["model.safetensors"]


def test_sharded_prequantized_checkpoint(tmp_path: Path) -> None:
    # GPTQ int4: eight 4-bit weights packed per I32 element, F16 scales
    a = write_safetensors(
        tmp_path / "model-00001-of-00002.safetensors",
        {"q.qweight": ("I32", [4, 64], 1024), "q.scales": ("F16", [4, 64], 512)},
    )
    b = write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {"lm_head.weight": ("F16", [32, 4], 256)}
    )
    quant = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": quant}))
    d = describe_checkpoint(tmp_path)
    assert d["file_bytes"] == a + b
    assert d["tensor_types"] == {"F16": 384, "I32": 256}
    assert d["n_params"] == 640  # stored elements: packed weights count once per I32
    assert d["tensor_bytes"] == 1792
    assert d["bpw"] == pytest.approx(8 * 1792 / 640)
    assert d["file_type"] == "gptq"
    assert d["quantization"] == quant
    assert len(d["files"]) == 2


def test_no_safetensors(tmp_path: Path) -> None:
    with pytest.raises(InvalidCheckpointError, match=r"no \*\.safetensors files"):
        describe_checkpoint(tmp_path)


def test_corrupt_header(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(InvalidCheckpointError, match="corrupt safetensors header"):
        describe_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(InvalidCheckpointError, match="too short"):
        describe_checkpoint(tmp_path)


def test_gguf_to_hf_rejects_unknown_dtype_before_importing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dtype='q4_0': choose one of f32, f16, bf16"):
        gguf_to_hf(tmp_path / "model.gguf", tmp_path / "out", dtype="q4_0")


def test_module_imports_no_runtime() -> None:
    import subprocess

    code = "import sys, harness.artifacts.hf_checkpoint; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

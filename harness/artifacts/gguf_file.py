"""Reading and writing GGUF files with the pure-Python ``gguf`` package (no runtime import).

Names lie: a "q2_k" file keeps tensors whose row length is not a multiple of 256 in another
type, so the real bits per weight come from the tensor table, never from the precision name.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gguf import GGMLQuantizationType

GGUF_MAGIC = b"GGUF"
FULL_PRECISION_FILE_TYPES = frozenset({"ALL_F32", "MOSTLY_F16", "MOSTLY_BF16"})
# Bump when the dequantizing writer changes, so cached references are rebuilt.
DEQUANTIZER_VERSION = "1"


class InvalidGGUFError(ValueError):
    """The file is missing, not GGUF, truncated or otherwise unreadable."""


@dataclass(frozen=True, slots=True)
class TensorTable:
    architecture: str
    file_type: str  # general.file_type as a LlamaFileType name; "unknown" when absent
    n_tensors: int
    n_params: int
    tensor_bytes: int
    file_bytes: int
    params_by_type: dict[str, int]
    header_bytes: int = 0  # metadata and tensor table before the data (the tokenizer lives here)

    @property
    def bpw(self) -> float:
        """Bits per weight over every tensor: 8 * tensor bytes / parameters."""
        return 8 * self.tensor_bytes / self.n_params

    @property
    def full_precision(self) -> bool:
        return self.file_type in FULL_PRECISION_FILE_TYPES


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InvalidGGUFError(f"{path}: cannot be read ({e.strerror})") from None
    if magic != GGUF_MAGIC:
        raise InvalidGGUFError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")


def read_table(path: Path) -> TensorTable:
    """Parse header and tensor table; checks that every tensor's data lies inside the file."""
    import gguf

    _check_magic(path)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises assorted errors on corrupt headers
        raise InvalidGGUFError(f"{path}: corrupt GGUF ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    params: dict[str, int] = defaultdict(int)
    tensor_bytes = 0
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise InvalidGGUFError(f"{path}: truncated (tensor {t.name} ends past end of file)")
        params[t.tensor_type.name] += int(t.n_elements)
        tensor_bytes += int(t.n_bytes)
    if not reader.tensors:
        raise InvalidGGUFError(f"{path}: GGUF file holds no tensors")
    return TensorTable(
        architecture=str(reader.fields["general.architecture"].contents()),
        file_type=_file_type(reader),
        n_tensors=len(reader.tensors),
        n_params=sum(params.values()),
        tensor_bytes=tensor_bytes,
        file_bytes=size,
        params_by_type=dict(sorted(params.items())),
        header_bytes=int(reader.data_offset),
    )


def _file_type(reader: object) -> str:
    import gguf

    field = reader.fields.get("general.file_type")  # type: ignore[attr-defined]
    if field is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(int(field.contents())).name
    except ValueError:
        return f"unknown({field.contents()})"


def dequantize_to_f16(src: Path, dst: Path) -> None:
    """Write ``src`` with every quantized tensor dequantized: matrices to F16, vectors to F32
    (llama.cpp keeps 1-D tensors such as norms in F32). Metadata is copied unchanged except
    general.file_type. The result is a reference whose values equal the source's dequantized
    weights, so it is only as good as the source: it cannot restore what quantization lost."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value_type = f.types[0]
        sub_type = f.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        value = f.contents()
        if f.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_key_value(f.name, value, value_type, sub_type=sub_type)
    if gguf.Keys.General.FILE_TYPE not in reader.fields:
        writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    # Two passes keep memory at one tensor: declare every output tensor, then convert and
    # write them one at a time.
    plan = [(t, _target_type(t.tensor_type, len(t.data.shape))) for t in reader.tensors]
    for t, qtype in plan:
        shape = (
            t.data.shape
            if t.data.dtype != np.uint8
            else (gguf.quant_shape_from_byte_shape(t.data.shape, t.tensor_type))
        )
        dtype = np.float16 if qtype == gguf.GGMLQuantizationType.F16 else np.float32
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(t.name, shape, np.dtype(dtype), nbytes, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t, qtype in plan:
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        dtype = np.float16 if qtype == gguf.GGMLQuantizationType.F16 else np.float32
        writer.write_tensor_data(np.ascontiguousarray(arr, dtype=dtype))
    writer.close()


def _target_type(qtype: GGMLQuantizationType, ndim: int) -> GGMLQuantizationType:
    """F32 and F16 stay as they are; quantized matrices become F16, vectors F32."""
    import gguf

    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return qtype
    return gguf.GGMLQuantizationType.F16 if ndim >= 2 else gguf.GGMLQuantizationType.F32

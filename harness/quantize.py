"""Quantization methods as derivation plans over the artifact cache.

``none``: the source file exactly as published. ``gguf``: an f16 reference (the source itself
when it is already full precision, else the source dequantized), then llama.cpp's
``llama_model_quantize`` to the requested precision. Planning is pure and cheap, so the
parent can tell whether a cell's file is cached; building imports llama_cpp and therefore
only ever runs in a worker subprocess.
"""

from __future__ import annotations

import ctypes
from importlib import metadata
from pathlib import Path

from harness.artifacts import ArtifactCache, Step, content_key, sha256_file
from harness.gguf_file import DEQUANTIZER_VERSION, TensorTable, dequantize_to_f16, read_table
from harness.result import ArtifactInfo
from runners.llama_cpp import FTYPES

DEQUANTIZE = "dequantize_f16"
QUANTIZE = "llama_model_quantize"
METHODS = ("gguf", "none")


def plan(method: str, precision: str, source_sha: str, source: TensorTable) -> list[Step]:
    """The derivation steps, in order; empty when the cell runs the source file itself."""
    if method == "none":
        return []
    if method != "gguf":
        raise ValueError(f"method {method!r} has no derivation plan (known: {METHODS})")
    steps: list[Step] = []
    if not source.full_precision:
        version = f"{metadata.version('gguf')}+dequantizer.{DEQUANTIZER_VERSION}"
        steps.append(
            Step(
                key=content_key(source_sha, DEQUANTIZE, "f16", "gguf", version),
                op=DEQUANTIZE,
                precision="f16",
                tool="gguf",
                tool_version=version,
                input_sha256=source_sha,
                input_key=None,
            )
        )
    if precision == "f16" and (steps or source.file_type == "MOSTLY_F16"):
        return steps
    version = metadata.version("llama-cpp-python")
    parent = steps[-1].key if steps else source_sha
    steps.append(
        Step(
            key=content_key(parent, QUANTIZE, precision, str(FTYPES[precision]), version),
            op=QUANTIZE,
            precision=precision,
            tool="llama-cpp-python",
            tool_version=version,
            input_sha256=source_sha if not steps else "",
            input_key=steps[-1].key if steps else None,
        )
    )
    return steps


def describe(
    path: Path,
    step: Step | None,
    build_s: float | None,
    sha: str,
    table: TensorTable | None = None,
) -> ArtifactInfo:
    table = table or read_table(path)
    return ArtifactInfo(
        path=str(path),
        sha256=sha,
        file_bytes=table.file_bytes,
        tensor_bytes=table.tensor_bytes,
        n_params=table.n_params,
        bpw=table.bpw,
        file_type=table.file_type,
        tensor_types=table.params_by_type,
        recipe=step.recipe() if step else {"op": "source"},
        build_s=build_s,
        cache_hit=build_s is None,
    )


def materialize(
    steps: list[Step], source: Path, cache: ArtifactCache, threads: int
) -> ArtifactInfo:
    """Build every missing step (worker only) and describe the final file."""
    if not steps:
        raise ValueError("nothing to materialize: the cell runs its source file as is")
    info: ArtifactInfo | None = None
    for step in steps:
        inp = source if step.input_key is None else cache.path(step.input_key)

        def make(out: Path, step: Step = step, inp: Path = inp) -> None:
            _run(step, inp, out, threads)

        def desc(path: Path, step: Step, build_s: float) -> ArtifactInfo:
            return describe(path, step, build_s, sha256_file(path))

        info = cache.build(step, make, desc)
    assert info is not None
    return info


def _run(step: Step, inp: Path, out: Path, threads: int) -> None:
    if step.op == DEQUANTIZE:
        dequantize_to_f16(inp, out)
        return
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[step.precision]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(inp).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise RuntimeError(f"llama_model_quantize({step.precision}) failed with code {rc}")

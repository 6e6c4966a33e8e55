"""Quantization methods as derivation plans over the artifact cache.

What a cell loads depends on its runtime's model format. GGUF runtimes: ``none`` is the source
file exactly as published; ``gguf`` is an f16 reference (the source itself when it is already
full precision, else the source dequantized), then llama.cpp's ``llama_model_quantize`` to
the requested precision. HF runtimes load a checkpoint directory: a GGUF source is converted
once into a bf16 safetensors checkpoint (transformers dequantizes it), and methods that
quantize at load time (torchao, bitsandbytes) need no further file. Planning is pure and
cheap, so the parent can tell whether a cell's artifact is cached; building imports
llama_cpp or transformers and therefore only ever runs in a worker subprocess.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from harness.artifacts.cache import (
    HF_DIR,
    MODEL_FILE,
    ArtifactCache,
    Step,
    content_key,
    sha256_path,
)
from harness.artifacts.gguf_file import (
    DEQUANTIZER_VERSION,
    TensorTable,
    dequantize_to_f16,
    read_table,
)
from harness.feasibility.support import method_spec
from harness.results.result import ArtifactInfo
from runners import ModelFormat, quantizer

DEQUANTIZE = "dequantize_f16"
QUANTIZE = "llama_model_quantize"
TO_HF = "gguf_to_hf"
CONVERTER = "transformers"  # the distribution whose GGUF loader converts a GGUF to a checkpoint
# Bump when harness.artifacts.hf_checkpoint.gguf_to_hf changes, so cached checkpoints are rebuilt.
CONVERTER_VERSION = "1"


class PlanError(ValueError):
    """The cell's model source cannot become what its runtime loads."""


def plan(
    method: str,
    precision: str,
    source_sha: str,
    source: TensorTable | None,
    fmt: ModelFormat | None = ModelFormat.gguf,
    transformers_version: str | None = None,
) -> list[Step]:
    """The derivation steps, in order; empty when the cell runs the source itself.

    ``source`` is the GGUF tensor table, None when the source is an HF checkpoint directory;
    ``fmt`` is what the runtime loads (``gguf``, ``hf``, or None for a remote server);
    ``transformers_version`` is the converter's version where the worker runs."""
    if fmt is None:
        return []
    if fmt is ModelFormat.hf:
        return _plan_hf(method, source_sha, source, transformers_version or "absent")
    if source is None:
        raise PlanError("the runtime loads GGUF files but model.source is an HF checkpoint")
    if method == "none":
        return []
    if method != "gguf":
        raise PlanError(f"method {method} does not produce GGUF files")
    spec = method_spec(method)
    if spec is None or precision not in spec.precisions:
        raise PlanError(f"method {method} cannot produce precision {precision}")
    steps: list[Step] = []
    if not source.full_precision:
        version = f"{metadata.version('gguf')}+dequantizer.{DEQUANTIZER_VERSION}"
        steps.append(_from_source(source_sha, DEQUANTIZE, "f16", "gguf", version))
    if precision == "f16" and (steps or source.file_type == "MOSTLY_F16"):
        return steps
    tool = quantizer(method)
    try:
        version = metadata.version(tool.tool)
    except metadata.PackageNotFoundError:  # the cell is blocked for it (support.py)
        version = "absent"
    parent = steps[-1].key if steps else source_sha
    steps.append(
        Step(
            key=content_key(parent, QUANTIZE, precision, str(tool.type_id(precision)), version),
            op=QUANTIZE,
            precision=precision,
            tool=tool.tool,
            tool_version=version,
            input_sha256=source_sha if not steps else "",
            input_key=steps[-1].key if steps else None,
        )
    )
    return steps


def _plan_hf(
    method: str, source_sha: str, source: TensorTable | None, transformers_version: str
) -> list[Step]:
    if source is None:
        return []  # already a checkpoint directory: loaded (and quantized at load) as is
    spec = method_spec(method)
    if spec is not None and spec.prequantized:
        raise PlanError(
            f"method {method} loads a checkpoint its library already quantized; point "
            "model.source.path at that checkpoint directory (the source here is a GGUF file)"
        )
    version = f"{transformers_version}+converter.{CONVERTER_VERSION}"
    return [_from_source(source_sha, TO_HF, "bf16", CONVERTER, version, HF_DIR)]


def _from_source(
    source_sha: str, op: str, precision: str, tool: str, version: str, output: str = MODEL_FILE
) -> Step:
    """A step that reads the source itself (its key follows the source's content hash)."""
    return Step(
        key=content_key(source_sha, op, precision, tool, version),
        op=op,
        precision=precision,
        tool=tool,
        tool_version=version,
        input_sha256=source_sha,
        input_key=None,
        output=output,
    )


def describe(
    path: Path,
    step: Step | None,
    build_s: float | None,
    sha: str,
    table: TensorTable | None = None,
) -> ArtifactInfo:
    if path.is_dir():
        return _describe_checkpoint(path, step, build_s, sha)
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


def _describe_checkpoint(
    path: Path, step: Step | None, build_s: float | None, sha: str
) -> ArtifactInfo:
    from harness.artifacts.hf_checkpoint import describe_checkpoint

    d = describe_checkpoint(path)
    return ArtifactInfo(
        path=str(path),
        sha256=sha,
        file_bytes=int(d["file_bytes"]),
        tensor_bytes=int(d["tensor_bytes"]),
        n_params=int(d["n_params"]),
        bpw=float(d["bpw"]),
        file_type=str(d["file_type"]),
        tensor_types={str(k): int(v) for k, v in d["tensor_types"].items()},
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
            return describe(path, step, build_s, sha256_path(path, cache.hash_index))

        info = cache.build(step, make, desc)
    assert info is not None
    return info


def _run(step: Step, inp: Path, out: Path, threads: int) -> None:
    if step.op == DEQUANTIZE:
        dequantize_to_f16(inp, out)
        return
    if step.op == TO_HF:
        from harness.artifacts.hf_checkpoint import gguf_to_hf

        gguf_to_hf(inp, out, dtype=step.precision)
        return
    quantizer("gguf").quantize(inp, out, step.precision, threads)

"""The inputs of a cell's decode roofline (harness/metrics/roofline.py), gathered in the worker
from what ran: the file's tensor bytes, the KV bytes per token of the runtime's cache dtype,
the measured requests, and the peak bandwidth (datasheet for a GPU, measured for a CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.config.errors import UserError
from harness.config.schema import Device, HarnessConfig, LoadMode
from harness.feasibility.footprint import predict
from harness.feasibility.support import method_spec
from harness.measure.bandwidth import host_bandwidth
from harness.metrics.roofline import decode_roofline
from harness.results.events import Phase, RequestRecord
from harness.results.result import ArtifactInfo
from runners import ModelFormat

Found = tuple[dict[str, float], dict[str, str], dict[str, str]]  # metrics, absent, tags
NAMES = ("roofline.achieved_bytes_s", "roofline.efficiency", "roofline.peak_bytes_s")


def _weights_as_loaded(cfg: HarnessConfig, artifact: ArtifactInfo) -> str | None:
    """Why the file's bytes are not the bytes decode reads; None when they are."""
    if cfg.runtime.model_format() is ModelFormat.gguf:
        return None
    spec = method_spec(cfg.method.name)
    if (spec is not None and spec.prequantized) or cfg.precision.name == "native":
        return None
    if cfg.method.name == "none" and artifact.file_type.lower() == cfg.precision.name:
        return None  # loaded in the dtype it is stored in
    return (
        f"method={cfg.method.name} precision={cfg.precision.name} converts the weights at load: "
        "their bytes in memory are not the file's"
    )


def peak(cfg: HarnessConfig) -> tuple[float, str] | None:
    """Peak read bandwidth (bytes/s) and where it came from; None without one."""
    hw = cfg.hardware
    if hw.memory_bandwidth_gb_s is not None:
        kind = "datasheet" if hw.device is Device.cuda else "configured"
        return hw.memory_bandwidth_gb_s * 1e9, f"{kind}: hardware.memory_bandwidth_gb_s"
    if hw.device is Device.cpu:
        found = host_bandwidth(Path(cfg.run.cache_dir).expanduser())
        return found.bytes_s, f"{found.source}; host {found.host}"
    return None


def _why_not(cfg: HarnessConfig, artifact: ArtifactInfo | None, metrics: dict[str, float]) -> str:
    if artifact is None:
        return "the model runs outside the harness: its bytes are unknown"
    if cfg.workload.mode is not LoadMode.closed_loop:
        return f"workload.mode={cfg.workload.mode.value}: the decode batch varies"
    if "decode_tok_s" not in metrics:
        return "no decode rate was measured"
    return _weights_as_loaded(cfg, artifact) or ""


def roofline(
    cfg: HarnessConfig,
    artifact: ArtifactInfo | None,
    records: Sequence[RequestRecord],
    metrics: dict[str, float],
) -> Found:
    why = _why_not(cfg, artifact, metrics)
    done = [r for r in records if r.phase == Phase.measure and r.ok and r.chunk_ns]
    if not why and not done:
        why = "no measured request completed"
    fp = None
    if not why:
        try:
            fp = predict(cfg)
        except UserError as e:
            why = f"no KV size for this runtime: {e}"
    if not why and (fp is None or not fp.kv_tokens):
        why = "the runtime's KV cache size is not known here"
    top = None if why else peak(cfg)
    if not why and top is None:
        why = f"hardware {cfg.hardware.name} has no memory_bandwidth_gb_s"
    if why:
        return {}, dict.fromkeys(NAMES, why), {}
    assert artifact is not None and fp is not None and top is not None
    r = decode_roofline(
        weight_bytes=float(artifact.tensor_bytes),
        kv_bytes_per_token=fp.kv / fp.kv_tokens,
        prompt_tokens_mean=sum(x.prompt_tokens for x in done) / len(done),
        output_tokens_mean=sum(x.output_tokens for x in done) / len(done),
        decode_tok_s=metrics["decode_tok_s"],
        concurrency=cfg.workload.concurrency,
        peak_bytes_s=top[0],
    )
    out = {
        "roofline.bytes_per_step": r.bytes_per_step,
        "roofline.achieved_bytes_s": r.achieved_bytes_s,
        "roofline.peak_bytes_s": top[0],
        "roofline.efficiency": r.efficiency,
    }
    return out, {}, {"roofline.peak_source": top[1]}

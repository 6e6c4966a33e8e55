"""One cell in a fresh process: ``python -m harness.worker {prepare,run} CELL_DIR``.

``prepare`` builds the cell's model file in the artifact cache (quantization imports the
runtime, so it never happens in the parent). ``run`` loads the runner, measures, and writes
``result.json`` atomically plus the raw ``events.jsonl``. Both write a failed result with the
error's last lines when they raise; a crash (signal) leaves no result and the parent reports
the exit signal and the log tail instead.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import psutil

from harness.artifacts.cache import ArtifactCache, Step
from harness.artifacts.quantize import materialize
from harness.config.convert import from_container, to_container
from harness.config.schema import HarnessConfig
from harness.measure.assemble import assemble
from harness.measure.metadata import environment, gpu_info, usable_cpus
from harness.measure.resources import ResourceMonitor, to_jsonl
from harness.measure.roofline import roofline
from harness.measure.session import Session
from harness.metrics.equivalence import settings as effective_settings
from harness.quality.evaluate import EvalOutput, EvalTask, FidelityInputs, run_eval
from harness.quality.suites import load_suite
from harness.results.cell_dir import (
    ARTIFACT_FILE,
    CELL_FILE,
    ENV_FILE,
    RESOURCES_FILE,
    RESULT_FILE,
)
from harness.results.clock import now_ns, seconds
from harness.results.result import ArtifactInfo, CellResult, Status, dump_result
from harness.results.result import write_json_atomic as write_json
from runners import LoadSpec, ReportsServedModel, Runner, get_runner

# 10 ms: NVML memory reads cost ~8 µs, and 100 ms polling misses 10 ms allocation spikes.
SAMPLE_INTERVAL_S = 0.01


def _die_with_parent() -> None:
    """An orphaned worker would keep loading the CPU while a resumed sweep measures."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.environ.get("HARNESS_PARENT_PID")
    if parent and os.getppid() != int(parent):
        sys.exit(3)  # the parent died before prctl took effect


def _threads(cfg: HarnessConfig) -> int:
    return cfg.hardware.threads or usable_cpus()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def prepare(cell_dir: Path, spec: dict[str, Any], cfg: HarnessConfig) -> None:
    steps = [Step(**s) for s in spec["steps"]]
    cache = ArtifactCache(Path(cfg.run.cache_dir))
    info = materialize(steps, Path(spec["source"]), cache, _threads(cfg))
    write_json(cell_dir / ARTIFACT_FILE, info)


def _check_device(cfg: HarnessConfig) -> None:
    """A cell that claims a GPU must have one, or its CPU numbers would carry a GPU label."""
    if cfg.hardware.device.value == "cuda":
        gpus = gpu_info()
        if not gpus.get("available"):
            raise RuntimeError(
                f"hardware.device=cuda but this machine has no GPU ({gpus['reason']})"
            )


def _evaluate(
    runner: Runner,
    cfg: HarnessConfig,
    spec: dict[str, Any],
    artifact: ArtifactInfo,
    versions: dict[str, str],
    cell_dir: Path,
) -> EvalOutput:
    """The quality eval on the loaded model; its failure costs the quality numbers only."""
    if not cfg.eval.enabled:
        return EvalOutput()
    try:
        suite = load_suite(cfg.eval.suite, "full")
        runtime = {k: v for k, v in to_container(cfg)["runtime"].items() if k != "python"}
        inputs = FidelityInputs(
            corpus=suite.corpus_text(),
            corpus_sha256=suite.file_sha256("corpus.txt"),
            artifact_sha256=artifact.sha256,
            runtime={**runtime, **versions},
            cache_dir=Path(cfg.run.cache_dir),
        )
        return run_eval(runner, cfg.eval, suite, EvalTask(**spec["eval"]), inputs, cell_dir)
    except Exception as e:
        why = f"eval failed: {type(e).__name__}: {e}"
        print("".join(traceback.format_exc().splitlines(keepends=True)[-20:]), file=sys.stderr)
        return EvalOutput(absent={"quality": why[:2000]}, flags=[why[:500]])


def run(cell_dir: Path, cfg: HarnessConfig, spec: dict[str, Any]) -> CellResult:
    _check_device(cfg)
    artifact = ArtifactInfo(**json.loads((cell_dir / ARTIFACT_FILE).read_text()))
    runner_cls = get_runner(cfg.runtime.name)
    load = LoadSpec(
        model_path=Path(artifact.path),
        device=cfg.hardware.device.value,
        threads=_threads(cfg),
        method=cfg.method.name,
        precision=cfg.precision.name,
        workdir=cell_dir,
    )
    runner = runner_cls(cfg.runtime, load)
    gpu = cfg.hardware.gpu_index if cfg.hardware.device.value == "cuda" else None
    monitor = ResourceMonitor(os.getpid(), gpu, interval_s=SAMPLE_INTERVAL_S)
    monitor.start()
    rss_before = psutil.Process().memory_info().rss
    t0 = now_ns()
    log = None
    try:
        runner.load()
        load_s = seconds(now_ns() - t0)
        versions = runner.versions()
        write_json(cell_dir / ENV_FILE, {**environment(), "runtime": versions})
        runner_settings = runner.generation_settings()
        measurement = Session(runner, cfg.workload, cell_dir, monitor).run()
        # memory and energy describe the performance run, not the eval that follows
        peak_rss = _peak_rss_bytes()
        log = monitor.stop()
        quality = _evaluate(runner, cfg, spec, artifact, versions, cell_dir)
    finally:
        runner.close()
        if log is None:
            log = monitor.stop()
        to_jsonl(log, cell_dir / RESOURCES_FILE)
    external = cfg.runtime.serves_elsewhere()
    out = assemble(
        cfg,
        measurement,
        log,
        runner_cls.capabilities.preallocates_memory,
        client=runner_cls.capabilities.async_streaming,
        external=external,
    )
    metrics = {
        **out.metrics,
        **quality.metrics,
        "load_time_s": load_s,
        "peak_rss_bytes": float(peak_rss),
        "rss_before_load_bytes": float(rss_before),
    }
    if external:
        _external_server(runner, metrics, out.absent)
    else:
        metrics["model_file_bytes"] = float(artifact.file_bytes)
        metrics["model_bpw"] = artifact.bpw
        metrics["model_params"] = float(artifact.n_params)
    found, missing, roof_tags = roofline(
        cfg, None if external else artifact, measurement.records, metrics
    )
    metrics.update(found)
    out.absent.update(missing)
    if not artifact.cache_hit and artifact.build_s is not None:
        # a cached entry keeps its original build time as provenance; only a build done
        # for this cell is this cell's cost
        metrics["artifact_build_s"] = artifact.build_s
    status = Status.ok
    if out.problems:
        status = Status.invalid if metrics.get("requests") else Status.failed
    reason = "; ".join(out.problems[:3])
    if len(out.problems) > 3:
        reason += f"; and {len(out.problems) - 3} more"
    return CellResult(
        status=status,
        reason=reason,
        metrics=metrics,
        per_rep=out.per_rep,
        absent={**out.absent, **quality.absent},
        problems=out.problems,
        flags=out.flags + quality.flags,
        tags={**quality.tags, **roof_tags},
        versions=versions,
        settings=effective_settings(runner_settings, measurement.records),
        artifact=None if external else artifact,
    )


# Measured here, these describe the harness's client, not the external server: kept under
# client_* names only.
SERVER_MEMORY = ("peak_rss_bytes", "peak_tree_rss_bytes", "mean_tree_rss_bytes")


def _external_server(runner: Runner, metrics: dict[str, float], absent: dict[str, str]) -> None:
    """A server the harness did not launch: no local file describes it and its memory is
    not in the measured tree. Only what the server itself reports is recorded."""
    facts, why = runner.served_model() if isinstance(runner, ReportsServedModel) else ({}, "")
    for key in ("model_file_bytes", "model_params", "model_bpw"):
        if key in facts:
            metrics[key] = facts[key]
        else:
            absent[key] = why or "the model runs outside the harness and reports no size"
    for key in SERVER_MEMORY:
        metrics.pop(key, None)
        for suffix in ("", "_std", "_cv", "_ci95_lo", "_ci95_hi"):
            metrics.pop(key + suffix, None)
        absent[key] = (
            "the server runs elsewhere: its memory is not measured here "
            "(client_peak_rss_bytes is the harness's own client)"
        )


def main(argv: list[str]) -> int:
    _die_with_parent()
    faulthandler.enable()  # a native crash prints the Python stack into the cell's log
    if len(argv) != 2 or argv[0] not in ("prepare", "run"):
        print("usage: python -m harness.worker {prepare,run} CELL_DIR", file=sys.stderr)
        return 2
    phase, cell_dir = argv[0], Path(argv[1])
    try:
        spec = json.loads((cell_dir / CELL_FILE).read_text())
        cfg = from_container(spec["config"])
        if phase == "prepare":
            prepare(cell_dir, spec, cfg)
            return 0
        dump_result(run(cell_dir, cfg, spec), cell_dir / RESULT_FILE)
        return 0
    except Exception as e:
        tail = "".join(traceback.format_exc().splitlines(keepends=True)[-20:])
        where = "artifact preparation" if phase == "prepare" else "measurement"
        failed = CellResult(
            status=Status.failed, reason=f"{where} failed: {type(e).__name__}: {e}", error=tail
        )
        dump_result(failed, cell_dir / RESULT_FILE)
        print(tail, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Typed structured configs: one dataclass per config group (stored in Hydra's ConfigStore by
``harness.config.register``).

YAML files under ``conf/`` extend these schemas; the CLI converts the composed config to these
dataclasses once (``harness.config.convert.to_typed``) and nothing downstream sees a DictConfig.
``__post_init__`` validates only: no environment changes, no I/O, no runtime imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from harness.config.decision import DecisionConfig
from harness.config.eval import EvalConfig, EvalLevel, GateSpec, SliceGateSpec
from runners import RunnerConfig

__all__ = ["DecisionConfig", "EvalConfig", "EvalLevel", "GateSpec", "SliceGateSpec"]


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class HardwareClass(StrEnum):
    """Kernel generations the support matrix distinguishes (harness/feasibility/support.yaml)."""

    cpu = "cpu"
    turing = "turing"  # SM75
    ampere = "ampere"  # SM80/86
    ada = "ada"  # SM89
    hopper = "hopper"  # SM90
    blackwell = "blackwell"  # SM100/103/120


class TrackingBackend(StrEnum):
    sqlite = "sqlite"  # a local SQLite file; the default
    server = "server"  # a team `mlflow server` over HTTP(S)


@dataclass
class ModelSource:
    """Where the checkpoint comes from: an installed distribution's file or a local path."""

    package: str | None = None  # distribution shipping the file; located without importing it
    file: str | None = None  # file name inside that distribution
    path: str | None = None  # explicit local path; wins over package/file

    def __post_init__(self) -> None:
        if self.path is None and not (self.package and self.file):
            raise ValueError("model.source needs `path`, or both `package` and `file`")


@dataclass
class CheckpointConfig:
    """One published (or local) checkpoint of a model, for one quantization method.

    ``path`` (a local checkpoint directory or GGUF file) wins over ``repo``. A Hub checkpoint is
    ``repo`` (``org/name``) at ``revision`` (a commit hash pins it; a branch or tag is resolved
    to its commit, which is recorded and keyed, so a moved branch re-measures). ``files`` makes
    it a GGUF repository: precision -> the file's name or glob (split parts match together,
    e.g. ``*q4_k_m-0000?-of-00002.gguf``); without it the checkpoint is a directory of
    safetensors, config and tokenizer files, holding ``precision`` (None: the model as
    published, quantized at load by methods that do so)."""

    repo: str | None = None
    revision: str = "main"
    files: dict[str, str] = field(default_factory=dict)
    precision: str | None = None
    path: str | None = None
    origin: str = ""  # where the repo id was found (a model card URL), for the next reader

    def __post_init__(self) -> None:
        if self.repo is None and self.path is None:
            raise ValueError("needs `repo` (org/name) or `path`")
        if self.repo is not None and not _REPO_ID.fullmatch(self.repo):
            raise ValueError(f"repo={self.repo!r} is not a Hub repo id (org/name)")
        if not self.revision:
            raise ValueError(f"repo={self.repo}: revision is empty")

    @property
    def is_gguf(self) -> bool:
        """A GGUF file (a local file, or a repo with ``files``) rather than a directory."""
        if self.path is not None:
            return not Path(self.path).expanduser().is_dir()
        return bool(self.files)


# The Hub's repo id rule: a namespace and a name of letters, digits, '-', '_' and '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def _checkpoint(name: str, value: Any) -> CheckpointConfig:
    if isinstance(value, CheckpointConfig):
        return value
    where = f"model.checkpoints.{name}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping (repo, revision, files, precision, path)")
    valid = [f.name for f in fields(CheckpointConfig)]
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise ValueError(f"{where} has unknown key {unknown[0]!r}; valid: {', '.join(valid)}")
    try:
        return CheckpointConfig(**value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


@dataclass
class ArchitectureConfig:
    """The numbers the memory math needs, from the model's published config.json. Every
    field is required: a missing one is an error naming it, never a guessed default."""

    layers: int = MISSING  # num_hidden_layers
    hidden_size: int = MISSING
    heads: int = MISSING  # num_attention_heads
    kv_heads: int = MISSING  # num_key_value_heads (GQA shrinks the KV cache through this)
    head_dim: int = MISSING  # head_dim, or hidden_size / num_attention_heads
    intermediate_size: int = MISSING
    vocab_size: int = MISSING
    max_context: int = MISSING  # max_position_embeddings
    tied_embeddings: bool = MISSING  # tie_word_embeddings
    dtype: str = "bf16"  # the published weights' dtype (what precision=native loads)


@dataclass
class ModelConfig:
    name: str = MISSING
    # None: a model known only by its architecture, which can be planned (plan=true) but
    # not run until a source names its checkpoint.
    source: ModelSource | None = None
    hf_id: str | None = None  # upstream checkpoint, for provenance
    # method -> its checkpoint (harness/artifacts/checkpoints.py picks one per cell). Typed
    # Any for OmegaConf, which cannot add a new dataclass entry from the command line
    # (+model.checkpoints.gptq.repo=...); __post_init__ makes every entry a CheckpointConfig.
    checkpoints: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.checkpoints = {k: _checkpoint(k, v) for k, v in self.checkpoints.items()}

    @property
    def checkpoint_table(self) -> dict[str, CheckpointConfig]:
        return {k: v for k, v in self.checkpoints.items() if isinstance(v, CheckpointConfig)}

    parameters: int | None = None
    architecture: ArchitectureConfig | None = None


@dataclass
class MethodConfig:
    name: str = MISSING  # gguf | none
    library: str = ""  # the tool that produces the artifact, recorded with its version


@dataclass
class PrecisionConfig:
    name: str = MISSING
    # What the name claims. The real bits per weight are read from the produced file.
    nominal_bits: float | None = None


@dataclass
class HardwareConfig:
    name: str = MISSING
    device: Device = Device.cpu
    threads: int | None = None  # None: every core this process may run on
    gpu_index: int = 0  # NVML index of the GPU a cuda cell runs on (CUDA_DEVICE_ORDER=PCI_BUS_ID)
    # The price snapshot that turns throughput into cost; what it is and where it came from
    # travel with every result, because prices move.
    price_per_hour: float | None = None
    price_currency: str = "USD"
    price_snapshot: str | None = None  # date the price was read, YYYY-MM-DD
    price_source: str | None = None  # where (a URL, a contract, or "assumption: ...")
    tdp_w: float | None = None
    # Device memory in GiB (2^30 bytes) as the driver reports it (nvidia-smi memory.total),
    # or system memory for a CPU profile. The fit planner needs it; it never guesses.
    memory_gb: float | None = None
    detect_memory: bool = False  # true: read this machine's memory when planning (local CPU)
    arch: HardwareClass | None = None  # a GPU's kernel generation (turing ... blackwell)
    memory_bandwidth_gb_s: float | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"hardware.threads={self.threads} must be >= 1 or null")
        if self.price_per_hour is not None and self.price_per_hour <= 0:
            raise ValueError(f"hardware.price_per_hour={self.price_per_hour} must be > 0")
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise ValueError(f"hardware.memory_gb={self.memory_gb} must be > 0")
        if self.device is Device.cpu and self.arch not in (None, HardwareClass.cpu):
            raise ValueError(f"hardware.arch={self.arch.value} is a GPU class; device is cpu")
        if self.device is Device.cuda and self.arch is HardwareClass.cpu:
            raise ValueError("hardware.arch=cpu contradicts hardware.device=cuda")

    @property
    def hardware_class(self) -> HardwareClass | None:
        return HardwareClass.cpu if self.device is Device.cpu else self.arch


class LoadMode(StrEnum):
    closed_loop = "closed_loop"  # `concurrency` streams, each sends when its last one finished
    offline = "offline"  # every request at once through runner.generate (batch throughput)
    poisson = "poisson"  # open loop: exponential inter-arrival times at `rate`
    gamma = "gamma"  # open loop: gamma inter-arrivals, shape `burstiness` (< 1 is burstier)
    rate_sweep = "rate_sweep"  # search the highest open-loop rate that meets the SLO


# Per-request SLO thresholds (seconds) a request must meet to count toward goodput.
SLO_METRICS = ("ttft_s", "ttfct_s", "tpot_s", "e2e_s", "itl_max_s")


@dataclass
class WorkloadConfig:
    """What requests to send and how; every check happens here, before any model loads."""

    name: str = MISSING
    prompts: list[str] = MISSING
    max_new_tokens: int = 64  # forced output length, verified per request
    input_tokens: int | None = None  # exact prompt length in engine tokens
    mode: LoadMode = LoadMode.closed_loop
    concurrency: int = 1  # closed loop: streams in flight
    rate: float | None = None  # open loop: requests/s (rate_sweep: the first rate tried)
    burstiness: float = 1.0  # gamma shape; 1.0 is Poisson
    max_concurrency: int | None = None  # open loop: cap on requests in flight
    requests: int | None = None  # per repetition; None: one per prompt
    warmup_requests: int = 0  # first requests of each repetition, recorded, never counted
    warmup_repetitions: int = 1
    repetitions: int = 3
    min_duration_s: float = 1.0  # a repetition keeps sending until it has run this long
    min_requests: int = 1  # fewer completed requests in a repetition makes the run INVALID
    seed: int = 0  # arrival times
    slo: dict[str, float] = field(default_factory=dict)  # e.g. {ttft_s: 0.5, tpot_s: 0.05}
    slo_attainment: float = 0.9  # rate_sweep: share of requests that must meet the SLO
    sweep_max_rate: float = 1000.0
    sweep_bisections: int = 3
    max_send_lag_s: float = 0.005  # send-lag p99 above this: the client was the bottleneck
    # self-checks, flagged (not invalidating): a server client's own CPU and event-loop lag,
    # and CPU used by processes outside the measured tree (contention on a shared box)
    max_client_cpu_cores: float = 0.8
    max_loop_lag_s: float = 0.02
    max_foreign_cpu_cores: float = 0.25

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("workload.prompts is empty")
        self._check_counts()
        self._check_arrivals()
        unknown = sorted(set(self.slo) - set(SLO_METRICS))
        if unknown:
            raise ValueError(
                f"workload.slo has unknown metric {unknown[0]!r}; valid: {', '.join(SLO_METRICS)}"
            )
        for key, value in self.slo.items():
            if value <= 0:
                raise ValueError(f"workload.slo.{key}={value} must be > 0")
        if self.mode is LoadMode.rate_sweep and not self.slo:
            raise ValueError("workload.mode=rate_sweep needs workload.slo (what a rate must meet)")

    @property
    def requests_per_repetition(self) -> int:
        return self.requests if self.requests is not None else len(self.prompts)

    def _check_counts(self) -> None:
        for name in ("max_new_tokens", "repetitions", "concurrency", "min_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"workload.{name}={getattr(self, name)} must be >= 1")
        if self.max_new_tokens < 2:
            raise ValueError(f"workload.max_new_tokens={self.max_new_tokens} must be >= 2")
        for name in ("warmup_repetitions", "warmup_requests", "min_duration_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"workload.{name}={getattr(self, name)} must be >= 0")
        for name in ("requests", "input_tokens", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"workload.{name}={value} must be >= 1 or null")
        if self.warmup_requests >= self.requests_per_repetition:
            raise ValueError(
                f"workload.warmup_requests={self.warmup_requests} leaves no measured request "
                f"of {self.requests_per_repetition} per repetition"
            )
        if not 0 < self.slo_attainment <= 1:
            raise ValueError(f"workload.slo_attainment={self.slo_attainment} must be in (0, 1]")

    def _check_arrivals(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"workload.rate={self.rate} must be > 0")
        open_loop = self.mode in (LoadMode.poisson, LoadMode.gamma, LoadMode.rate_sweep)
        if open_loop and self.rate is None:
            raise ValueError(f"workload.mode={self.mode.value} needs workload.rate (requests/s)")
        if self.burstiness <= 0:
            raise ValueError(f"workload.burstiness={self.burstiness} must be > 0")
        for name in ("max_send_lag_s", "max_client_cpu_cores", "max_loop_lag_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"workload.{name}={getattr(self, name)} must be > 0")
        if self.max_foreign_cpu_cores < 0:
            value = self.max_foreign_cpu_cores
            raise ValueError(f"workload.max_foreign_cpu_cores={value} must be >= 0")


@dataclass
class CostConfig:
    enabled: bool = True  # needs hardware.price_per_hour
    energy_price_per_kwh: float | None = None  # owned hardware: energy cost from measured J

    def __post_init__(self) -> None:
        if self.energy_price_per_kwh is not None and self.energy_price_per_kwh <= 0:
            raise ValueError(f"cost.energy_price_per_kwh={self.energy_price_per_kwh} must be > 0")


@dataclass
class TrackingConfig:
    backend: TrackingBackend = TrackingBackend.sqlite
    uri: str = MISSING
    experiment: str = "harness"


@dataclass
class RunControl:
    """How to run, not what to measure: never part of a cell's identity."""

    force: bool = False  # re-run cells that already have a finished run
    force_fit: bool = False  # run cells the memory planner predicts will not fit
    # run cells asking for more threads than the machine has logical cores (flagged)
    oversubscribe_threads: bool = False
    timeout_s: float = 1800.0  # per cell measurement worker
    prepare_timeout_s: float = 3600.0  # per cell artifact preparation (quantization)
    cache_dir: str = "~/.cache/harness"
    # Set by the sweeper on each job it launches: the cell as planned (a file in the sweep's
    # directory, so the job runs exactly that plan) and the sweep it belongs to.
    cell_file: str | None = None
    parent_run_id: str | None = None
    sweep_id: str | None = None
    sweep_name: str | None = None
    report: bool = True  # build the report (HTML, Markdown, CSV) when a sweep ends
    # the Dockerfile.gpu target this sweep is meant for (vllm, trtllm, llama_cpp, hf): refused
    # outside that image, so a sweep pinned to an image never runs half-configured elsewhere
    image: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout_s", "prepare_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"run.{name}={getattr(self, name)} must be > 0")


@dataclass
class HarnessConfig:
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    precision: PrecisionConfig = MISSING
    runtime: RunnerConfig = MISSING
    hardware: HardwareConfig = MISSING
    workload: WorkloadConfig = MISSING
    tracking: TrackingConfig = MISSING
    cost: CostConfig = field(default_factory=CostConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunControl = field(default_factory=RunControl)
    # the user's constraint the report recommends for; never part of a cell's identity
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    plan: bool = False  # print every cell's memory fit and support verdict; run nothing


AXES = ("model", "method", "precision", "runtime", "hardware", "workload")


@dataclass
class HarnessSweeperConf:
    """``hydra/sweeper: harness``: the HarnessSweeper plugin (hydra_plugins/) and its settings."""

    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.HarnessSweeper"
    max_batch_size: int | None = 1  # cells per launcher call; raise it for parallel launchers
    params: dict[str, str] | None = None  # axes shared by every cell
    # blocks of axes expanded one after another (each with `params`), e.g. one per runtime
    grid: list[dict[str, str]] | None = None

"""Launch profiles of the ``openai_server`` runner: how each server is configured, started
(its argv, a list built from the runtime config, never a shell string) and what it takes in
memory. A profile is data plus pure functions; running the process is runners/server_launch.py.

Flags checked against (the versions are noted because flags drift):
- llama-cpp-python 0.3.36: ``python -m llama_cpp.server --help`` (installed here);
- llama-server: ggml-org/llama.cpp tools/server/README.md @00dc8057 (``-fa on|off|auto``);
- vLLM: vllm/engine/arg_utils.py @99d7eb5d (booleans take ``--no-``), ``vllm serve MODEL``;
- trtllm-serve: NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py @00209af1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runners.base import GIB, MIB, Engine, LoadSpec, MemoryPolicy, ModelFormat, RunnerConfig
from runners.llama_cpp import llama_cpp_memory


@dataclass
class ServerLaunchConfig(RunnerConfig):
    """How the ``openai_server`` runner starts its server (``runtime.*`` keys); ``launch`` null:
    it starts none and uses ``runtime.base_url``. Each profile reads the keys under its name."""

    model: str | None = None  # the served name; None: the first id that GET /v1/models lists
    launch: str | None = None  # one of PROFILES
    # launch null: what the external server serves, as the user declares it (recorded as the
    # cell's method and precision; null: "unknown", never the config's defaults)
    served_method: str | None = None
    served_precision: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    ready_timeout_s: float = 120.0
    executable: str | None = None  # None: next to runtime.python, else on PATH
    server_args: list[str] = field(default_factory=list)  # appended verbatim to the argv
    # llama_cpp_python and llama_server
    n_ctx: int = 2048  # llama_server: shared by its `parallel` slots
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None  # None: the hardware profile's thread count
    n_gpu_layers: int = 0
    flash_attn: bool = False
    parallel: int = 1  # llama_server slots
    # vllm (dtype ... kv_cache_dtype) and trtllm_serve (max_model_len, the last three)
    dtype: str = "auto"
    max_model_len: int | None = None  # None: from the model config
    gpu_memory_utilization: float = 0.9
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    max_batch_size: int = 64
    max_num_tokens: int = 8192
    kv_cache_free_gpu_memory_fraction: float = 0.9

    def check_launch(self) -> None:
        """Validation of the launch keys, for the subclass's ``__post_init__``."""
        if self.launch is None:
            return
        if self.served_method is not None or self.served_precision is not None:
            raise ValueError(
                "runtime.served_method and runtime.served_precision describe an external "
                "server (runtime.launch=null); a launched server serves the cell's method "
                "and precision"
            )
        if self.launch not in PROFILES:
            raise ValueError(
                f"runtime.launch={self.launch!r} is invalid; choose one of: "
                f"{', '.join(PROFILES)} (or null to use runtime.base_url)"
            )
        if self.launch == "llama_cpp_python" and self.executable is not None:
            raise ValueError(
                "runtime.executable does not apply to launch=llama_cpp_python; "
                "set runtime.python to the interpreter instead"
            )
        rules = (
            ("ready_timeout_s", self.ready_timeout_s > 0, "> 0"),
            ("gpu_memory_utilization", 0 < self.gpu_memory_utilization <= 1, "in (0, 1]"),
            ("n_ctx", self.n_ctx >= 16, ">= 16"),
            ("parallel", self.parallel >= 1, ">= 1"),
            ("port", self.port is None or 0 < self.port < 65536, "in 1..65535 or null"),
        )
        for field_name, ok, rule in rules:
            if not ok:
                raise ValueError(f"runtime.{field_name}={getattr(self, field_name)} must be {rule}")

    def engine(self) -> Engine:
        """The launched profile's engine; a server run elsewhere serves whatever it serves."""
        return Engine.openai_compatible if self.launch is None else PROFILES[self.launch].engine

    def model_format(self) -> ModelFormat | None:
        """The launched profile's artifact; None for an external server (no local model)."""
        return None if self.launch is None else PROFILES[self.launch].model_format

    def memory_policy(self) -> MemoryPolicy | None:
        """What the launched server takes; a server launched elsewhere is not predicted."""
        return None if self.launch is None else PROFILES[self.launch].memory(self)

    def context_limit(self) -> int | None:
        """llama.cpp servers: n_ctx (llama-server splits it among its slots); vLLM and
        trtllm-serve: max_model_len when set; a server elsewhere: its own business."""
        if self.launch in ("llama_cpp_python", "llama_server"):
            return self.n_ctx // (self.parallel if self.launch == "llama_server" else 1)
        return self.max_model_len if self.launch is not None else None

    def thread_count(self) -> int | None:
        return self.n_threads if self.launch in ("llama_cpp_python", "llama_server") else None

    def serves_elsewhere(self) -> bool:
        return self.launch is None

    def served_variant(self) -> tuple[str, str] | None:
        if self.launch is not None:
            return None
        return (self.served_method or "unknown", self.served_precision or "unknown")

    def required_packages(self, method: str) -> dict[str, str]:
        """A server loads the model (and a method's library) in its own process; only a
        profile that runs in the worker's interpreter needs packages there."""
        return {} if self.launch is None else dict(PROFILES[self.launch].packages)


# llama-cpp-python[server]'s dependencies (its `server` extra, pinned in pyproject's `server`)
LLAMA_CPP_SERVER_PACKAGES = (
    "llama-cpp-python",
    "uvicorn",
    "fastapi",
    "pydantic-settings",
    "sse-starlette",
    "starlette-context",
)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _threads(c: ServerLaunchConfig, spec: LoadSpec) -> str:
    return str(c.n_threads or spec.threads)


def llama_cpp_python_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    # --interrupt_requests defaults to true: a new request then ends the running stream early
    # (seen here: concurrent streams broke off). mlock off, as in the in-process runner.
    return [
        *("--model", str(spec.model_path), "--host", host, "--port", str(port)),
        *("--n_ctx", str(c.n_ctx), "--n_batch", str(c.n_batch), "--n_ubatch", str(c.n_ubatch)),
        *("--n_threads", _threads(c, spec), "--n_threads_batch", _threads(c, spec)),
        *("--n_gpu_layers", str(c.n_gpu_layers), "--flash_attn", _flag(c.flash_attn)),
        *("--seed", "0", "--use_mlock", "false", "--interrupt_requests", "false"),
        *("--verbose", "false"),
    ]


def llama_server_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    # -c is the context of all slots together: each of the -np slots gets n_ctx / parallel.
    return [
        *("-m", str(spec.model_path), "--host", host, "--port", str(port)),
        *("-c", str(c.n_ctx), "-b", str(c.n_batch), "-ub", str(c.n_ubatch)),
        *("-t", _threads(c, spec), "-tb", _threads(c, spec), "-ngl", str(c.n_gpu_layers)),
        *("-np", str(c.parallel), "-fa", "on" if c.flash_attn else "off"),
        *("--seed", "0", "--no-cache-prompt", "--no-webui"),
    ]


def vllm_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    argv = [str(spec.model_path), "--host", host, "--port", str(port)]
    argv += ["--served-model-name", c.model or spec.model_path.name, "--dtype", c.dtype]
    if c.max_model_len is not None:
        argv += ["--max-model-len", str(c.max_model_len)]
    argv += ["--gpu-memory-utilization", str(c.gpu_memory_utilization)]
    if c.quantization is not None:
        argv += ["--quantization", c.quantization]
    return [
        *argv,
        "--kv-cache-dtype",
        c.kv_cache_dtype,
        "--no-enable-prefix-caching",
        *("--seed", "0"),
    ]


def trtllm_serve_args(c: ServerLaunchConfig, spec: LoadSpec, host: str, port: int) -> list[str]:
    argv = [str(spec.model_path), "--host", host, "--port", str(port), "--backend", "pytorch"]
    argv += ["--max_batch_size", str(c.max_batch_size), "--max_num_tokens", str(c.max_num_tokens)]
    if c.max_model_len is not None:
        argv += ["--max_seq_len", str(c.max_model_len)]
    return [*argv, "--kv_cache_free_gpu_memory_fraction", str(c.kv_cache_free_gpu_memory_fraction)]


# vLLM's default max_num_batched_tokens for the API server on data-center GPUs (V1 engine):
# the size of the forward pass it profiles for activation memory at startup.
VLLM_BATCHED_TOKENS = 8192
# vLLM's --kv-cache-dtype values and the element type each stores (auto: the model's dtype).
KV_CACHE_DTYPES: dict[str, str | None] = {
    "auto": None,
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}


def check_kv_cache_dtype(value: str) -> None:
    if value not in KV_CACHE_DTYPES:
        raise ValueError(
            f"runtime.kv_cache_dtype={value!r} is invalid; choose one of: "
            f"{', '.join(KV_CACHE_DTYPES)}"
        )


# What vLLM and TensorRT-LLM keep on the GPU beyond weights, KV and the activations of one
# forward pass: vLLM's CUDA graphs and non-torch allocations (its docs put graph capture at
# ~0.5-1 GiB); TensorRT-LLM's runtime workspace. Estimates, calibrated by the logged ratio.
ENGINE_GPU_RESERVE_BYTES = 1.0 * GIB
# Logit rows a server engine keeps for one forward pass: vLLM's default max_num_seqs (used
# for TensorRT-LLM too, whose max_batch_size the harness sets; the same order).
MAX_SEQS = 256
# A server process on a CPU: the worker's base estimate, as for transformers (import torch).
SERVER_HOST_BASE_BYTES = 280 * MIB


def llama_cpp_server_memory(c: ServerLaunchConfig) -> MemoryPolicy:
    """llama-cpp-python's server and llama-server: llama.cpp's policy; the slots of
    llama-server share the ``n_ctx`` cells."""
    return llama_cpp_memory(c.n_ctx, ("f16", "f16"), c.n_ubatch, c.n_gpu_layers, c.flash_attn)


def vllm_memory(c: ServerLaunchConfig) -> MemoryPolicy:
    """One max_model_len sequence must fit beside the weights; gpu_memory_utilization of the
    whole GPU is taken up front."""
    stored = KV_CACHE_DTYPES.get(c.kv_cache_dtype)
    return MemoryPolicy(
        context=c.max_model_len,
        sequences=1,
        kv_dtypes=None if stored is None else (stored, stored),
        batch_tokens=VLLM_BATCHED_TOKENS,
        preallocate=c.gpu_memory_utilization,
        compute_dtype=None if c.dtype == "auto" else c.dtype,
        logit_rows=MAX_SEQS,
        gpu_reserve_bytes=ENGINE_GPU_RESERVE_BYTES,
        host_base_bytes=SERVER_HOST_BASE_BYTES,
    )


def trtllm_memory(c: ServerLaunchConfig) -> MemoryPolicy:
    """kv_cache_free_gpu_memory_fraction of what is free after the weights, up front."""
    return MemoryPolicy(
        context=c.max_model_len,
        sequences=1,
        batch_tokens=c.max_num_tokens,
        preallocate=c.kv_cache_free_gpu_memory_fraction,
        of_free=True,
        logit_rows=MAX_SEQS,
        gpu_reserve_bytes=ENGINE_GPU_RESERVE_BYTES,
        host_base_bytes=SERVER_HOST_BASE_BYTES,
    )


@dataclass(frozen=True, slots=True)
class Profile:
    """One way to start a server: its program, the model it loads and its option builder."""

    name: str
    engine: Engine  # what it serves with (the support table's key)
    program: str | None  # the executable's file name; None: ``python -m llama_cpp.server``
    subcommand: tuple[str, ...]  # what follows the program before the options
    model_format: ModelFormat  # what it loads from the artifact cache
    tokenize: str | None  # the tokenize body it understands (runners.openai_compat)
    prefix_cache: str  # whether a repeated prompt prefix skips prefill, recorded per cell
    options: Callable[[ServerLaunchConfig, LoadSpec, str, int], list[str]]
    memory: Callable[[ServerLaunchConfig], MemoryPolicy]  # how the server takes memory
    # honours the request field `ignore_eos` (llama-cpp-python's server does not: only its
    # `min_tokens` masks EOS until the length is reached)
    ignore_eos: bool = True
    # distributions it needs in the worker's interpreter, with the command that installs them
    # (the other profiles are programs found at launch)
    packages: tuple[tuple[str, str], ...] = ()


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="llama_cpp_python",
            engine=Engine.llama_cpp,
            program=None,
            subcommand=(),
            model_format=ModelFormat.gguf,
            tokenize="llama_cpp_python",
            prefix_cache="on: llama-cpp-python reuses the previous request's matching prompt "
            "prefix (no switch turns it off)",
            options=llama_cpp_python_args,
            memory=llama_cpp_server_memory,
            ignore_eos=False,
            packages=tuple((p, "pip install .[server]") for p in LLAMA_CPP_SERVER_PACKAGES),
        ),
        Profile(
            name="llama_server",
            engine=Engine.llama_cpp,
            program="llama-server",
            subcommand=(),
            model_format=ModelFormat.gguf,
            tokenize="llama_server",
            prefix_cache="off (--no-cache-prompt)",
            options=llama_server_args,
            memory=llama_cpp_server_memory,
        ),
        Profile(
            name="vllm",
            engine=Engine.vllm,
            program="vllm",
            subcommand=("serve",),
            model_format=ModelFormat.hf,
            tokenize="vllm",
            prefix_cache="off (--no-enable-prefix-caching)",
            options=vllm_args,
            memory=vllm_memory,
        ),
        Profile(
            name="trtllm_serve",
            engine=Engine.tensorrt_llm,
            program="trtllm-serve",
            subcommand=(),
            model_format=ModelFormat.hf,
            tokenize=None,  # no tokenize endpoint (/health, /version, /metrics only)
            prefix_cache="trtllm-serve's default, not turned off "
            "(kv_cache_config.enable_block_reuse)",
            options=trtllm_serve_args,
            memory=trtllm_memory,
        ),
    )
}

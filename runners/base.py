"""The narrow contract every runtime adapter implements.

The harness owns the clock, the repetitions and the statistics; an adapter only loads a model,
turns text into token ids and produces token ids. Adapters import their runtime inside
``load()`` so that importing ``runners`` never imports llama_cpp, vllm or tensorrt_llm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from omegaconf import MISSING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class Engine(StrEnum):
    """The engine a runner configuration drives: the support table's key (harness/feasibility/
    support.yaml). One name per engine, however it is reached (in process or as a server)."""

    llama_cpp = "llama.cpp"
    vllm = "vllm"
    tensorrt_llm = "tensorrt_llm"
    transformers = "transformers"
    openai_compatible = "openai_compatible"  # a server run elsewhere: whatever it serves
    synthetic = "synthetic"  # the FakeRunner: injected numbers, never reported


class ModelFormat(StrEnum):
    """What a runner configuration loads from the artifact cache."""

    gguf = "gguf"  # one GGUF file
    hf = "hf"  # a Hugging Face checkpoint directory


MIB = 2**20
GIB = 2**30


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """How a runtime, as configured, takes memory: what the fit planner (harness/feasibility/
    footprint.py) needs to predict it before anything loads, as data. None fields mean "as the
    workload needs"; the byte constants are the runtime's own, each with its source where set."""

    context: int | None = None  # KV tokens reserved per sequence (None: prompt + output)
    sequences: int | None = None  # sequences KV is reserved for (None: the workload's)
    kv_dtypes: tuple[str, str] | None = None  # K and V element types (None: compute dtype)
    batch_tokens: int | None = None  # tokens in one forward pass (activation workspace)
    preallocate: float | None = None  # takes this fraction of memory up front (vLLM, TRT-LLM)
    of_free: bool = False  # ... of what is free after the weights (TRT-LLM), not the total
    gpu_layers: int | None = None  # layers placed on the GPU (-1 or None: all of them)
    flash_attn: bool = True  # False: the attention scores are materialised (llama.cpp)
    compute_dtype: str | None = None  # dtype of what quantization leaves unquantized
    # Bytes per activation element (None: the compute dtype's); ggml computes in f32.
    activation_bytes: float | None = None
    # Logit rows of one forward pass on a GPU: None: one per sequence in flight; 0: one per
    # token of the batch (llama.cpp reserves its compute buffer for a full ubatch of outputs);
    # n: up to n sequences (a server's max_num_seqs).
    logit_rows: int | None = None
    offloads_layers: bool = False  # can keep some layers on the host when the GPU is short
    gpu_reserve_bytes: float = 0.0  # kept on the GPU beyond weights, KV and activations
    host_base_bytes: float = 280 * MIB  # the worker process's RSS before the model loads
    host_bytes_per_vocab: float = 0.0  # host tables that grow with the vocabulary
    # transformers on a CPU: the memory-mapped 16-bit checkpoint is resident while loading
    # (twice for a method that quantizes at load)
    load_transient: bool = False


@dataclass
class RunnerConfig:
    """Base of every runner's typed config; ``name`` is the registry key.

    ``python`` names the interpreter the cell's worker runs under (a separate virtual
    environment with this harness installed), for runtimes whose pins conflict (vLLM and
    TensorRT-LLM pin different torch versions). None: the parent's own interpreter.
    """

    name: str = MISSING
    python: str | None = None

    def engine(self) -> Engine:
        """The engine this configuration drives (the support table's key)."""
        raise NotImplementedError

    def model_format(self) -> ModelFormat | None:
        """The artifact this config loads: a GGUF file, an HF checkpoint directory, or None
        when the runner needs no local model (a client of a remote server)."""
        return ModelFormat.gguf

    def memory_policy(self) -> MemoryPolicy | None:
        """How this configuration takes memory; None: not predictable here (a remote server,
        a synthetic runner)."""
        return None

    def context_limit(self) -> int | None:
        """Tokens one request may occupy (prompt + output) as configured; None: not set here
        (the model's own limit applies, or a server elsewhere decides)."""
        return None

    def thread_count(self) -> int | None:
        """CPU threads the runtime is told to use; None: the hardware profile's."""
        return None

    def serves_elsewhere(self) -> bool:
        """True when the model runs outside the worker's process tree (a server the harness
        did not launch): its memory and CPU are not measured here, and nothing local (file
        size, bits per weight) describes it."""
        return False

    def served_variant(self) -> tuple[str, str] | None:
        """For a model served elsewhere, the (method, precision) the user declares it to be,
        "unknown" where not declared; None when the harness builds what it runs, so the
        cell's own method and precision are true."""
        return None

    def required_packages(self, method: str) -> dict[str, str]:
        """Distributions this configuration needs for ``method`` beyond the runner's own
        ``packages`` (a method's library where the model loads, the server a launch profile
        starts), each with the command that installs it; checked where the worker runs
        before anything launches."""
        return {}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a runner can do, declared up front so shared code never tests ``runner.name``."""

    streaming: bool
    batching: bool
    logits: bool
    gpu_offload: bool
    # Only the FakeRunner sets this: its numbers are injected, never measured, never reported.
    synthetic: bool = False
    # Requests the runtime can serve at once: 1 for an in-process single-stream engine, None
    # for a server that queues internally. Load modes above it are refused before loading.
    max_concurrency: int | None = 1
    # Implements ``astream`` (network clients): the load generator then drives it from an
    # event loop; otherwise it calls ``stream`` from one thread, one request at a time.
    async_streaming: bool = False
    # Takes a fixed share of device memory up front (vLLM, TensorRT-LLM): its peak VRAM is a
    # setting, not a need, and is flagged as such.
    preallocates_memory: bool = False
    # Implements ``complete``: generation the way a user calls the model (chat template, stops
    # at end of turn), which quality evals need; benchmark ``stream`` never stops early.
    completion: bool = False


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a runner needs to load, decided by the harness (artifact cache, hardware)."""

    model_path: Path  # a GGUF file or an HF checkpoint directory (see model_format)
    device: str
    threads: int
    method: str = "none"  # the cell's quantization method and precision, for runtimes that
    precision: str = "native"  # quantize or cast at load time (HF + torchao, bitsandbytes)
    workdir: Path | None = None  # the cell's directory: server logs and pid files go here


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request: prompt token ids and the exact number of tokens to produce.

    ``prompt`` is the text the ids came from; a server runner that cannot send ids sends it.
    ``prompt_tokens`` is how many tokens the runtime says it prefills for this prompt when that
    is known apart from ``prompt_ids`` (a server's own count), with ``prompt_source`` naming
    who said so (a ``CountSource`` value).
    """

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    prompt: str = ""
    prompt_tokens: int | None = None
    prompt_source: str = "engine"


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed chunk as an async runner reports it (the harness stamps its arrival).

    ``tokens`` are the generated tokens in the chunk as far as the runner can count them;
    ``content`` is whether it carries user-visible output (not only reasoning, a role or usage).
    A server's usage block, usually on the last chunk, fills the two totals.
    """

    tokens: int
    content: bool
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    # Where ``output_tokens`` came from when it is not the server's usage block:
    # "finish_length" (the server stopped at max_tokens) or "retokenized" (text re-tokenised).
    output_source: str = "server_usage"


@runtime_checkable
class Runner(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[RunnerConfig]]
    capabilities: ClassVar[Capabilities]
    # Distributions whose versions identify the runtime (read from metadata, never imported).
    packages: ClassVar[tuple[str, ...]]
    # How to install ``packages`` (e.g. "pip install .[hf]"); None: they come with the harness.
    install_hint: ClassVar[str | None]

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None: ...

    def load(self) -> None:
        """Import the runtime and build the engine; timed by the harness as load time."""

    def tokenize(self, text: str) -> list[int]:
        """Prompt text to the engine's own token ids (exact counts come from here)."""

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        """Yield chunks of generated token ids as the engine produces them, greedy, EOS
        ignored, until ``request.max_new_tokens`` ids were yielded; starts from an empty
        cache so the prompt is really prefilled."""

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        """Generated ids for each request; returns only when the device work is done."""

    def versions(self) -> dict[str, str]:
        """Runtime version and build details (valid after ``load``)."""

    def generation_settings(self) -> dict[str, str]:
        """The effective generation settings this runner applies to every request (chat
        template or raw prompt, sampling, EOS handling, BOS, length limits), recorded per cell
        so that cells on different runtimes can be checked for equivalence."""

    def counters(self) -> dict[str, float]:
        """Cumulative counters the engine keeps about itself (e.g. llama.cpp's decode time and
        token count, torch allocator peaks); the harness diffs them across a repetition to
        cross-check its own clock. Empty when the runtime keeps none."""

    def close(self) -> None:
        """Free the engine; idempotent."""


@runtime_checkable
class LogitsAccess(Protocol):
    """What a runner declaring ``logits`` adds: the full next-token distribution, for
    reference-logit fidelity (KL divergence against a baseline) and log-likelihood scoring."""

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Log-softmax over the vocabulary of the next token after each prefix of ``ids``:
        row i is the distribution of token i + 1; shape [len(ids), n_vocab]. One forward
        pass from an empty cache, no sampling."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One eval generation: the text a user would see and how it ended.

    ``finish`` is "stop" when the model ended its turn (EOS or the template's end-of-turn
    token) and "length" when ``max_new_tokens`` cut it off.
    """

    text: str
    prompt_tokens: int
    output_tokens: int
    finish: str


@runtime_checkable
class TextCompletion(Protocol):
    """What a runner declaring ``completion`` adds: greedy generation that stops at the end of
    the model's turn, for quality evals (the same call for the baseline and every variant)."""

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        """Greedy continuation of ``prompt``, at most ``max_new_tokens`` tokens, stopping at
        EOS / end of turn, from an empty cache. ``chat``: wrap the prompt as one user message
        in the model's own chat template (with the generation prompt); else send it raw."""

    def chat_template(self) -> str | None:
        """The chat template text ``complete(chat=True)`` applies (None: the model has none),
        hashed into the eval settings so baseline and variant are known to match."""


@runtime_checkable
class ReportsServedModel(Protocol):
    """What a client of a server adds: the model's size as the server reports it."""

    def served_model(self) -> tuple[dict[str, float], str]:
        """Reported ``model_file_bytes``, ``model_params`` and ``model_bpw`` (those known), and
        the reason for the rest."""


@runtime_checkable
class BuildsRequests(Protocol):
    """What a runner adds when tiling ``tokenize`` ids is not what it prefills (a server sent
    text): it builds each request itself, to exactly ``input_tokens`` as its runtime counts."""

    def request_for(self, text: str, max_new_tokens: int, input_tokens: int | None) -> Request:
        """The request for prompt ``text``; with ``input_tokens`` its prompt is exactly that
        many tokens as the runtime counts them, with that count and its source recorded."""


@runtime_checkable
class AsyncStreaming(Protocol):
    """What a runner declaring ``async_streaming`` adds: many requests in flight at once."""

    def astream(self, request: Request) -> AsyncIterator[Delta]:
        """Yield each chunk as it arrives; the harness stamps the time on receipt."""


@runtime_checkable
class Quantizer(Protocol):
    """The tool that turns a full-precision model file into a quantized one of its method (the
    artifact cache runs it in a worker, keyed by what it is and which version made it)."""

    tool: str  # the distribution that does it, e.g. llama-cpp-python

    def type_id(self, precision: str) -> int:
        """The tool's own number for ``precision`` (e.g. llama.cpp's llama_ftype)."""

    def quantize(self, source: Path, out: Path, precision: str, threads: int) -> None:
        """Write the quantized file; imports the runtime, so only ever called in a worker."""

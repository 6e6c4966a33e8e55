"""The narrow contract every runtime adapter implements.

The harness owns the clock, the repetitions and the statistics; an adapter only loads a model,
turns text into token ids and produces token ids. Adapters import their runtime inside
``load()`` so that importing ``runners`` never imports llama_cpp, vllm or tensorrt_llm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from omegaconf import MISSING


@dataclass
class RunnerConfig:
    """Base of every runner's typed config; ``name`` is the registry key."""

    name: str = MISSING


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a runner can do, declared up front so shared code never tests ``runner.name``."""

    streaming: bool
    batching: bool
    logits: bool
    gpu_offload: bool
    devices: frozenset[str]
    methods: frozenset[str]
    precisions: frozenset[str]
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


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a runner needs to load, decided by the harness (artifact cache, hardware)."""

    model_path: Path
    device: str
    threads: int


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request: prompt token ids and the exact number of tokens to produce.

    ``prompt`` is the text the ids came from; a server runner that cannot send ids sends it.
    """

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    prompt: str = ""


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


@runtime_checkable
class Runner(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[RunnerConfig]]
    capabilities: ClassVar[Capabilities]
    # Distributions whose versions identify the runtime (read from metadata, never imported).
    packages: ClassVar[tuple[str, ...]]

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

    def counters(self) -> dict[str, float]:
        """Cumulative counters the engine keeps about itself (e.g. llama.cpp's decode time and
        token count, torch allocator peaks); the harness diffs them across a repetition to
        cross-check its own clock. Empty when the runtime keeps none."""

    def close(self) -> None:
        """Free the engine; idempotent."""


@runtime_checkable
class AsyncStreaming(Protocol):
    """What a runner declaring ``async_streaming`` adds: many requests in flight at once."""

    def astream(self, request: Request) -> AsyncIterator[Delta]:
        """Yield each chunk as it arrives; the harness stamps the time on receipt."""

"""The narrow contract every runtime adapter implements.

The harness owns the clock, the repetitions and the statistics; an adapter only loads a model,
turns text into token ids and produces token ids. Adapters import their runtime inside
``load()`` so that importing ``runners`` never imports llama_cpp, vllm or tensorrt_llm.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a runner needs to load, decided by the harness (artifact cache, hardware)."""

    model_path: Path
    device: str
    threads: int


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request: prompt token ids and the exact number of tokens to produce."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int


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

    def close(self) -> None:
        """Free the engine; idempotent."""

"""A deterministic runner for testing the orchestrator, never for numbers.

It sleeps instead of computing and can inject faults (exception, segfault, hang, short
output). Its capabilities say ``synthetic=True``: the harness tags such runs as synthetic and
no report may use them. It has no config file under ``conf/``, so it is never a default; tests
add ``tests/conf`` to the search path to select it.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from runners.base import Capabilities, LoadSpec, Request, RunnerConfig


class Fault(StrEnum):
    none = "none"
    error = "error"  # raise from stream()
    segfault = "segfault"  # crash the worker process from load()
    hang = "hang"  # never return from load()


@dataclass
class FakeConfig(RunnerConfig):
    name: str = "fake"
    load_s: float = 0.0
    ttft_s: float = 0.002
    itl_s: float = 0.001
    fault: Fault = Fault.none
    short_by: int = 0  # produce this many tokens fewer than asked


class FakeRunner:
    name: ClassVar[str] = "fake"
    Config: ClassVar[type[RunnerConfig]] = FakeConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        batching=False,
        logits=False,
        gpu_offload=False,
        devices=frozenset({"cpu", "cuda"}),
        methods=frozenset({"none", "gguf"}),
        precisions=frozenset({"native", "f16"}),
        synthetic=True,
    )
    packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RunnerConfig, spec: LoadSpec) -> None:
        assert isinstance(config, FakeConfig)
        self.config = config
        self.spec = spec

    def load(self) -> None:
        if self.config.fault is Fault.segfault:
            ctypes.string_at(0)  # SIGSEGV: the worker dies like a crashing native runtime
        if self.config.fault is Fault.hang:
            while True:
                time.sleep(3600)
        time.sleep(self.config.load_s)

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        if self.config.fault is Fault.error:
            raise RuntimeError("injected failure in stream()")
        time.sleep(self.config.ttft_s)
        for i in range(request.max_new_tokens - self.config.short_by):
            if i:
                time.sleep(self.config.itl_s)
            yield (i % 7,)

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        return [[t for chunk in self.stream(r) for t in chunk] for r in batch]

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}

    def close(self) -> None:
        pass

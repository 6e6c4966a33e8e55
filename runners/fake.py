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
from typing import TYPE_CHECKING, ClassVar

from runners.base import Capabilities, Completion, Engine, LoadSpec, Request, RunnerConfig

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FAKE_VOCAB = 32


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
    chunk_tokens: int = 1  # tokens per yielded chunk (a server that coalesces tokens)
    completion_text: str = "#### 0"  # what complete() answers to every prompt
    logit_noise: float = 0.0  # perturbs logprobs(): 0 is the reference distribution

    def engine(self) -> Engine:
        return Engine.synthetic


def _wait_until(due_ns: int) -> None:
    """Sleep to within a millisecond of the deadline, then spin: sleeps overshoot by tens of
    microseconds, which would blur the delays the accuracy benchmark recovers."""
    remaining = due_ns - time.perf_counter_ns()
    if remaining > 1_000_000:
        time.sleep((remaining - 1_000_000) / 1e9)
    while time.perf_counter_ns() < due_ns:
        continue  # deliberate busy-wait for the last millisecond (see docstring)


class FakeRunner:
    name: ClassVar[str] = "fake"
    Config: ClassVar[type[RunnerConfig]] = FakeConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        batching=False,
        gpu_offload=False,
        synthetic=True,
        logits=True,
        completion=True,
    )
    packages: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str | None] = None

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
        return [min(len(word), FAKE_VOCAB - 1) for word in text.split()]

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        words = self.config.completion_text.split()[:max_new_tokens]
        finish = "length" if len(words) == max_new_tokens else "stop"
        return Completion(" ".join(words), len(self.tokenize(prompt)), len(words), finish)

    def chat_template(self) -> str | None:
        return "{{ messages[0].content }}"

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """A fixed distribution per (position, token), perturbed by ``logit_noise``."""
        import numpy as np

        grid = np.arange(len(ids))[:, None] * 0.37 + np.asarray(ids)[:, None] * 0.11
        logits = np.sin(grid + np.arange(FAKE_VOCAB)[None, :] * 0.7) * 3.0
        if self.config.logit_noise:
            rng = np.random.default_rng(list(ids)[:16] or [0])
            logits = logits + rng.normal(0.0, self.config.logit_noise, logits.shape)
        logits -= logits.max(axis=1, keepdims=True)
        out: npt.NDArray[np.float32] = (
            logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        ).astype(np.float32)
        return out

    def stream(self, request: Request) -> Iterator[Sequence[int]]:
        """The first chunk is due ``ttft_s`` after the call, each later one ``itl_s`` per token
        after the previous; deadlines are absolute so sleep overshoot never accumulates."""
        if self.config.fault is Fault.error:
            raise RuntimeError("injected failure in stream()")
        c = self.config
        n = request.max_new_tokens - c.short_by
        due = time.perf_counter_ns() + int(c.ttft_s * 1e9)
        produced = 0
        while produced < n:
            k = min(c.chunk_tokens, n - produced)
            if produced:
                due += int(c.itl_s * 1e9) * k
            _wait_until(due)
            yield tuple((produced + j) % 7 for j in range(k))
            produced += k

    def generate(self, batch: Sequence[Request]) -> list[list[int]]:
        return [[t for chunk in self.stream(r) for t in chunk] for r in batch]

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}

    def generation_settings(self) -> dict[str, str]:
        return {"chat_template": "none (raw prompt)", "sampling": "synthetic", "eos": "none"}

    def counters(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass

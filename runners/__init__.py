"""Runner registry: name -> adapter class, from the ``harness.runners`` entry-point group.

Built-in runners are declared in pyproject.toml through the same entry-point group that
third-party packages use, so there is one registration path. Loading an entry point imports
only the adapter module, never its runtime (adapters import the runtime in ``load``).
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import entry_points

from runners.base import (
    AsyncStreaming,
    BuildsRequests,
    Capabilities,
    Completion,
    Delta,
    Engine,
    LoadSpec,
    LogitsAccess,
    MemoryPolicy,
    ModelFormat,
    Quantizer,
    ReportsServedModel,
    Request,
    Runner,
    RunnerConfig,
    TextCompletion,
)

__all__ = [
    "AsyncStreaming",
    "BuildsRequests",
    "Capabilities",
    "Completion",
    "Delta",
    "Engine",
    "LoadSpec",
    "LogitsAccess",
    "MemoryPolicy",
    "ModelFormat",
    "Quantizer",
    "ReportsServedModel",
    "Request",
    "Runner",
    "RunnerConfig",
    "TextCompletion",
    "UnknownRunnerError",
    "get_runner",
    "quantizer",
    "runner_names",
]

_ENTRY_POINT_GROUP = "harness.runners"


class UnknownRunnerError(LookupError):
    def __init__(self, name: str, choices: list[str]) -> None:
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        super().__init__(f"unknown runtime '{name}'; choose one of: {', '.join(choices)}{hint}")
        self.name = name
        self.choices = choices


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=_ENTRY_POINT_GROUP)}


def runner_names() -> list[str]:
    return sorted(_entry_points())


@cache
def get_runner(name: str) -> type[Runner]:
    if name not in _entry_points():
        raise UnknownRunnerError(name, runner_names())
    (ep,) = entry_points(group=_ENTRY_POINT_GROUP, name=name)
    cls = ep.load()
    if cls.name != name:
        raise TypeError(f"entry point '{name}' loads a runner named '{cls.name}'")
    return cls  # type: ignore[no-any-return]


def quantizer(method: str) -> Quantizer:
    """The tool that builds quantized files of ``method`` (``gguf``: llama.cpp's quantize);
    importing it imports no runtime. KeyError for a method no runner quantizes."""
    if method != "gguf":
        raise KeyError(f"no runner quantizes files for method {method!r}")
    from runners.llama_cpp import GGUFQuantizer

    return GGUFQuantizer()

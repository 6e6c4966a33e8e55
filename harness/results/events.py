"""The raw event log: the single source every latency and throughput metric is derived from.

One JSONL file per repetition (``events/<phase>-<n>.jsonl``, one ``RequestRecord`` per line)
plus ``events/repetitions.json`` describing each repetition (load mode, its parameters, the
window it ran in). Warmup repetitions are stored apart under their own phase and never enter
a statistic; warmup requests inside a measured repetition carry ``phase="warmup"``.

Format history (EVENTS_VERSION):
  1: RequestRecord with t_send_ns and chunk times only (issue 2).
  2: scheduled send time and slot wait, first content token, zero-token chunks, per-count
     sources, request status, non-streamed (offline) records, per-repetition descriptions.
  3: the client's own health per repetition (``RepetitionInfo.client``: event-loop lag);
     version-2 logs read with it empty.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

EVENTS_VERSION = 3
READABLE = (2, 3)
EVENTS_DIR = "events"
REPETITIONS_FILE = "repetitions.json"


class CountSource(StrEnum):
    engine = "engine"  # the runtime's own token ids: exact
    server_usage = "server_usage"  # the server's `usage` block: exact per request
    chunks = "chunks"  # one token per non-empty streamed chunk: exact only without coalescing
    retokenized = "retokenized"  # client re-tokenisation of text: approximate
    # the server stopped at max_tokens (finish_reason "length") with min_tokens = max_tokens,
    # so it says it generated exactly that many; its own count, but not a reported number
    finish_length = "finish_length"
    # prompt counts only: the server's tokenize endpoint counted the text it was sent; the
    # count asked for (token ids sent, the server confirmed nothing); nobody could count it
    server_tokenize = "server_tokenize"
    requested = "requested"
    unknown = "unknown"


class Phase(StrEnum):
    warmup = "warmup"
    probe = "probe"  # a rate-sweep probe: decides the rate, never enters a statistic
    measure = "measure"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request, as the harness clock saw it. Times are ``perf_counter_ns`` of the worker."""

    phase: str
    repetition: int
    index: int  # position in the repetition's request sequence
    prompt_index: int  # which prompt of the workload's set
    t_scheduled_ns: int  # when the load pattern wanted it sent
    queue_ns: int  # time waiting for a free concurrency slot after t_scheduled_ns
    t_send_ns: int  # when it was really handed to the runner
    # Every chunk the runner produced, including ones without generated tokens (a server's
    # role-only or usage-only chunk); chunk_tokens[i] generated tokens arrived at chunk_ns[i].
    chunk_ns: tuple[int, ...]
    chunk_tokens: tuple[int, ...]
    t_first_content_ns: int | None  # first chunk with user-visible content (not reasoning)
    prompt_tokens: int
    prompt_count_source: str
    output_tokens: int
    output_count_source: str
    target_tokens: int  # the forced output length
    streamed: bool = True  # False: offline batch, only the completion time is known
    status: str = "ok"  # "ok" or "error"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class RepetitionInfo:
    """How one repetition was driven and when it ran."""

    phase: str
    repetition: int
    mode: str
    t_start_ns: int
    t_end_ns: int
    requests: int
    params: dict[str, float] = field(default_factory=dict)  # rate, concurrency, shape, seed
    # the load generator's own health: event-loop lag (async clients), seconds
    client: dict[str, float] = field(default_factory=dict)


def _name(phase: str, repetition: int) -> str:
    return f"{phase}-{repetition}.jsonl"


def write_repetition(cell_dir: Path, info: RepetitionInfo, records: list[RequestRecord]) -> Path:
    """Write one repetition's records, then append its description (records first, so a
    description never points at a missing file)."""
    out = cell_dir / EVENTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / _name(info.phase, info.repetition)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(asdict(r), sort_keys=True) + "\n")
    index = out / REPETITIONS_FILE
    infos: dict[str, Any] = {"version": EVENTS_VERSION, "repetitions": []}
    if index.exists():
        infos = json.loads(index.read_text())
    infos["repetitions"].append(asdict(info))
    index.write_text(json.dumps(infos, indent=2, sort_keys=True) + "\n")
    return path


def _record(d: dict[str, Any]) -> RequestRecord:
    d["chunk_ns"] = tuple(d["chunk_ns"])
    d["chunk_tokens"] = tuple(d["chunk_tokens"])
    return RequestRecord(**d)


def read_log(cell_dir: Path) -> tuple[list[RepetitionInfo], list[RequestRecord]]:
    """Every repetition's description and every request record, in the order they ran."""
    out = cell_dir / EVENTS_DIR
    data = json.loads((out / REPETITIONS_FILE).read_text())
    if data.get("version") not in READABLE:
        raise ValueError(f"{out}: events format {data.get('version')}, need one of {READABLE}")
    infos = [RepetitionInfo(**d) for d in data["repetitions"]]
    records: list[RequestRecord] = []
    for info in infos:
        lines = (out / _name(info.phase, info.repetition)).read_text().splitlines()
        records.extend(_record(json.loads(line)) for line in lines)
    return infos, records

"""Run a workload's repetitions on a loaded runner: warmups, rate-sweep probes, measured runs.

Each repetition's events are written as soon as it ends (a crash later keeps them), the
resource monitor is marked at its edges, and the engine's own counters are read around it so
the harness clock can be cross-checked against the runtime's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.config.schema import LoadMode, WorkloadConfig
from harness.measure.drivers import Pattern
from harness.measure.loadgen import build_requests, pattern_for, relabel, run_repetition
from harness.metrics.derive import repetition
from harness.metrics.validity import client_lag
from harness.results.events import Phase, RepetitionInfo, RequestRecord, write_repetition
from runners import Request, Runner

SEARCH_DOWN_STEPS = 6  # halvings tried when the first rate already misses the SLO


class Marker(Protocol):
    """Where repetition edges go: the resource monitor reads its energy counters there."""

    def mark(self, label: str) -> object: ...


class _NoMarker:
    def mark(self, label: str) -> object:
        return None


@dataclass
class Measurement:
    infos: list[RepetitionInfo] = field(default_factory=list)
    records: list[RequestRecord] = field(default_factory=list)
    per_rep: dict[str, list[float]] = field(default_factory=dict)  # engine counters per rep
    metrics: dict[str, float] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    probes: list[tuple[float, float]] = field(default_factory=list)  # (rate, goodput fraction)
    stopped: str | None = None  # why the session stopped before its last repetition


def engine_deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What the engine says happened in one repetition. ``*_peak_bytes`` are gauges (read at
    the end); other counters are cumulative and differenced."""
    out = {}
    for key, end in after.items():
        if key.endswith("_peak_bytes"):
            out[f"engine_{key}"] = end
        elif key in before:
            out[f"engine_{key}"] = end - before[key]
    tokens, secs = out.get("engine_decode_tokens"), out.get("engine_decode_s")
    if tokens and secs:
        out["engine_decode_tok_s"] = tokens / secs
    return out


def search_rate(
    passes: Callable[[float], bool], start: float, max_rate: float, bisections: int
) -> float | None:
    """Highest rate that passes: double from ``start`` until a miss (or ``max_rate``), or
    halve until a pass; then bisect between the last pass and the first miss."""
    lo: float | None = None
    hi: float | None = None
    rate = start
    if passes(rate):
        lo = rate
        while rate * 2 <= max_rate:
            rate *= 2
            if not passes(rate):
                hi = rate
                break
            lo = rate
    else:
        hi = rate
        for _ in range(SEARCH_DOWN_STEPS):
            rate /= 2
            if passes(rate):
                lo = rate
                break
            hi = rate
    if lo is None or hi is None:
        return lo
    for _ in range(bisections):
        mid = (lo + hi) / 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


class Session:
    """One cell's measurement: owns the request list, the pattern and the output directory."""

    def __init__(
        self, runner: Runner, workload: WorkloadConfig, cell_dir: Path, marker: Marker | None = None
    ) -> None:
        self.runner = runner
        self.workload = workload
        self.cell_dir = cell_dir
        self.marker: Marker = marker or _NoMarker()
        self.out = Measurement()
        self.requests: list[Request] = []

    def _pattern(self, rate: float | None = None, seed_offset: int = 0) -> Pattern:
        return pattern_for(
            self.workload, self.runner.capabilities.max_concurrency, rate, seed_offset
        )

    def _run(self, pattern: Pattern, phase: Phase, rep: int) -> list[RequestRecord]:
        label = f"{phase.value}-{rep}"
        before = self.runner.counters()
        self.marker.mark(f"start:{label}")
        info, records = run_repetition(self.runner, self.requests, pattern, phase.value, rep)
        self.marker.mark(f"end:{label}")
        after = self.runner.counters()
        if phase is not Phase.measure:
            records = relabel(records, phase.value)
        else:
            for key, value in engine_deltas(before, after).items():
                self.out.per_rep.setdefault(key, []).append(value)
        write_repetition(self.cell_dir, info, records)
        if info.client.get("stopped_early") and self.out.stopped is None:
            error = next((r.error for r in records if not r.ok), None)
            self.out.stopped = (
                f"{label} stopped after {int(info.client['stopped_early'])} failed requests "
                f"(last: {error}); no later repetition was run"
            )
        self.out.infos.append(info)
        self.out.records.extend(records)
        return records

    def _probe(self, rate: float) -> bool:
        """A probe passes when enough requests meet the SLO and the client kept up."""
        n = len(self.out.probes)
        pattern = self._pattern(rate, seed_offset=1000 + n)
        records = self._run(pattern, Phase.probe, n)
        measured = relabel(records, Phase.measure.value)
        fraction = repetition(measured, self.workload.slo).get("goodput_fraction", 0.0)
        self.out.probes.append((rate, fraction))
        lagging = client_lag(measured, self.workload.max_send_lag_s)
        return fraction >= self.workload.slo_attainment and not lagging

    def run(self) -> Measurement:
        w = self.workload
        self.requests = build_requests(self.runner, w.prompts, w.max_new_tokens, w.input_tokens)
        for rep in range(w.warmup_repetitions):
            self._run(self._pattern(seed_offset=rep), Phase.warmup, rep)
            if self.out.stopped:
                return self.out
        rate = w.rate
        if w.mode is LoadMode.rate_sweep:
            assert w.rate is not None
            found = search_rate(self._probe, w.rate, w.sweep_max_rate, w.sweep_bisections)
            lowest = min(r for r, _ in self.out.probes)
            if found is None:
                self.out.absent["max_rate_at_slo_req_s"] = (
                    f"no probed rate down to {lowest:.3g} req/s met the SLO "
                    f"for {w.slo_attainment:.0%} of requests"
                )
            else:
                self.out.metrics["max_rate_at_slo_req_s"] = found
            rate = found if found is not None else lowest
        for rep in range(w.repetitions):
            self._run(self._pattern(rate, seed_offset=rep), Phase.measure, rep)
            if self.out.stopped:
                break
        return self.out

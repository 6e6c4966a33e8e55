"""Is a measurement worth reporting? VALID or INVALID with reasons, plus flags.

INVALID means the numbers do not measure what the config asked for: requests failed, the
forced output length was not produced, a repetition was too short or too small, or the load
generator itself fell behind its schedule. Flags do not invalidate but must travel with the
numbers: unstable repetitions, a throttled GPU, preallocated memory, token-count mismatches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.config.schema import WorkloadConfig
from harness.metrics.derive import send_lag_s
from harness.metrics.stats import percentile
from harness.results.clock import seconds
from harness.results.events import CountSource, Phase, RepetitionInfo, RequestRecord


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)  # any one makes the run INVALID
    flags: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def failed_requests(measured: Sequence[RequestRecord]) -> list[str]:
    errors = Counter(r.error or "error" for r in measured if not r.ok)
    return [f"{n} of {len(measured)} requests failed: {msg}" for msg, n in errors.most_common()]


def short_outputs(measured: Sequence[RequestRecord]) -> list[str]:
    """The forced output length is what makes variants comparable: check every request."""
    wrong = [r for r in measured if r.ok and r.output_tokens != r.target_tokens]
    if not wrong:
        return []
    worst = min(wrong, key=lambda r: r.output_tokens)
    return [
        f"{len(wrong)} of {len(measured)} requests did not produce the forced length "
        f"(e.g. repetition {worst.repetition} request {worst.index}: "
        f"{worst.output_tokens} of {worst.target_tokens} tokens, "
        f"counted by {worst.output_count_source})"
    ]


def prompt_lengths(measured: Sequence[RequestRecord], input_tokens: int | None) -> list[str]:
    """A fixed input length must be what the runtime prefilled (the server's own count), or the
    input numbers describe a prompt that was never sent."""
    if input_tokens is None:
        return []
    wrong = [r for r in measured if r.ok and r.prompt_tokens != input_tokens]
    if not wrong:
        return []
    r = wrong[0]
    seen = sorted({w.prompt_tokens for w in wrong})
    return [
        f"{len(wrong)} of {len(measured)} requests prefilled "
        f"{', '.join(map(str, seen[:5]))} prompt tokens, not workload.input_tokens="
        f"{input_tokens} (counted by {r.prompt_count_source})"
    ]


def repetition_sizes(
    infos: Sequence[RepetitionInfo], measured: Sequence[RequestRecord], workload: WorkloadConfig
) -> list[str]:
    out = []
    for info in infos:
        if info.phase != Phase.measure:
            continue
        done = sum(1 for r in measured if r.repetition == info.repetition and r.ok)
        if done < workload.min_requests:
            out.append(
                f"repetition {info.repetition} completed {done} requests, "
                f"workload.min_requests={workload.min_requests}"
            )
        duration = seconds(info.t_end_ns - info.t_start_ns)
        if duration < workload.min_duration_s:
            out.append(
                f"repetition {info.repetition} ran {duration:.2f} s, "
                f"workload.min_duration_s={workload.min_duration_s}"
            )
    return out


def client_lag(measured: Sequence[RequestRecord], limit_s: float) -> list[str]:
    """The send lag's p99 (its maximum when there are too few requests for a p99) above the
    limit means the arrival pattern was the client's, not the workload's."""
    lags = [send_lag_s(r) for r in measured]
    if not lags:
        return []
    value = percentile(lags, 99) if len(lags) >= 100 else max(lags)
    label = "p99" if len(lags) >= 100 else "max"
    if value is not None and value > limit_s:
        return [
            f"load generator fell behind: send lag {label} {value * 1e3:.2f} ms > "
            f"workload.max_send_lag_s={limit_s * 1e3:.2f} ms"
        ]
    return []


def self_checks(
    workload: WorkloadConfig,
    per_rep: Mapping[str, Sequence[float]],
    infos: Sequence[RepetitionInfo],
    *,
    client: bool,
    external: bool,
) -> list[str]:
    """Flags on how the measurement itself went: a single repetition (no variance estimate), a
    server client that was busy or late (its timestamps lag the server), and contention from
    processes outside the measured tree, on the CPUs or on the GPU. ``client``: the worker only
    drives a server; ``external``: that server runs outside the tree, so its own CPU is among
    the "foreign" seconds and contention cannot be told apart from it (no CPU flag then)."""
    reps = [i for i in infos if i.phase == Phase.measure]
    flags = []
    if len(reps) == 1:
        flags.append("one repetition: no variance estimate (workload.repetitions=1)")

    def worst(key: str) -> tuple[int, float] | None:
        values = per_rep.get(key) or []
        return max(enumerate(values), key=lambda iv: iv[1]) if values else None

    if client and (w := worst("client_cpu_cores")) and w[1] > workload.max_client_cpu_cores:
        flags.append(
            f"client busy: the harness's client used {w[1]:.2f} cores in repetition {w[0]} "
            f"(> workload.max_client_cpu_cores={workload.max_client_cpu_cores}); its "
            "timestamps may lag the server"
        )
    lag = max((i.client.get("loop_lag_max_s", 0.0) for i in reps), default=0.0)
    if lag > workload.max_loop_lag_s:
        flags.append(
            f"client lagged: its event loop woke up to {lag * 1e3:.1f} ms late "
            f"(> workload.max_loop_lag_s={workload.max_loop_lag_s})"
        )
    w = worst("foreign_cpu_cores")
    if not external and w and w[1] > workload.max_foreign_cpu_cores:
        flags.append(
            f"contention: processes outside the measured tree used {w[1]:.2f} cores in "
            f"repetition {w[0]} (> workload.max_foreign_cpu_cores="
            f"{workload.max_foreign_cpu_cores})"
        )
    if (g := worst("gpu_foreign_procs_max")) and g[1] > 0:
        held = max(per_rep.get("gpu_foreign_peak_bytes") or [0.0]) / 2**30
        flags.append(
            f"contention: {int(g[1])} other processes held the GPU (up to {held:.2f} GiB) "
            f"in repetition {g[0]}"
        )
    return flags


def judge(
    infos: Sequence[RepetitionInfo],
    records: Sequence[RequestRecord],
    workload: WorkloadConfig,
    unstable: Sequence[str],
) -> Verdict:
    measured = [r for r in records if r.phase == Phase.measure]
    v = Verdict()
    if not measured:
        v.problems.append("no measured request")
        return v
    v.problems += failed_requests(measured)
    v.problems += short_outputs(measured)
    v.problems += prompt_lengths(measured, workload.input_tokens)
    v.problems += repetition_sizes(infos, measured, workload)
    v.problems += client_lag(measured, workload.max_send_lag_s)
    v.flags += [f"unstable: {u}" for u in unstable]
    unconfirmed = Counter(
        r.prompt_count_source
        for r in measured
        if r.ok and r.prompt_count_source in (CountSource.requested, CountSource.unknown)
    )
    for source, n in sorted(unconfirmed.items()):
        v.flags.append(f"prompt lengths: {n} of {len(measured)} requests {source}, unconfirmed")
    approximate = Counter(
        r.output_count_source
        for r in measured
        if r.ok and r.output_count_source not in (CountSource.engine, CountSource.server_usage)
    )
    for source, n in sorted(approximate.items()):
        v.flags.append(f"token counts: {n} of {len(measured)} requests counted by {source}")
    mismatched = [
        r for r in measured if r.ok and r.streamed and sum(r.chunk_tokens) != r.output_tokens
    ]
    if mismatched:
        r = mismatched[0]
        v.flags.append(
            f"token counts: {len(mismatched)} requests streamed {sum(r.chunk_tokens)} counted "
            f"tokens but {r.output_tokens} by {r.output_count_source} (chunks coalesce tokens; "
            "per-token ITL splits each gap evenly)"
        )
    return v

from harness.config.schema import WorkloadConfig
from harness.metrics.validity import judge
from harness.results.events import RepetitionInfo
from tests.unit.events_builder import MS, rec


def workload(**kw) -> WorkloadConfig:
    return WorkloadConfig(name="w", prompts=["a"], **{"min_duration_s": 0.0, **kw})


def info(rep: int, seconds: float) -> RepetitionInfo:
    return RepetitionInfo("measure", rep, "closed_loop", 0, int(seconds * 1000 * MS), 1)


def test_clean_run_is_valid() -> None:
    v = judge([info(0, 1.0)], [rec([10, 20])], workload(), [])
    assert v.valid and v.problems == [] and v.flags == []


def test_errors_short_outputs_and_small_repetitions_invalidate() -> None:
    records = [
        rec([10, 20], target=4),
        rec([], tokens=[], index=1, error="RuntimeError: boom"),
        rec([10, 20], rep=1),
    ]
    v = judge(
        [info(0, 1.0), info(1, 0.5)], records, workload(min_requests=2, min_duration_s=1.0), []
    )
    assert not v.valid
    assert v.problems == [
        "1 of 3 requests failed: RuntimeError: boom",
        "1 of 3 requests did not produce the forced length (e.g. repetition 0 request 0: "
        "2 of 4 tokens, counted by engine)",
        "repetition 0 completed 1 requests, workload.min_requests=2",
        "repetition 1 completed 1 requests, workload.min_requests=2",
        "repetition 1 ran 0.50 s, workload.min_duration_s=1.0",
    ]


def test_a_lagging_client_invalidates_the_run() -> None:
    late = rec([50, 60], scheduled=0, send=12)  # 12 ms late, no slot wait
    queued = rec([80, 90], index=1, scheduled=0, queue=30, send=30.5)  # waited for a slot
    v = judge([info(0, 1.0)], [late, queued], workload(), [])
    assert v.problems == [
        "load generator fell behind: send lag max 12.00 ms > workload.max_send_lag_s=5.00 ms"
    ]
    ok = judge([info(0, 1.0)], [queued], workload(), [])
    assert ok.valid


def test_flags_do_not_invalidate() -> None:
    coalesced = rec([10, 20], output=8, target=8, source="server_usage")
    v = judge([info(0, 1.0)], [coalesced], workload(), ["ttft_mean_s: CV 12.0% ≥ 10%"])
    assert v.valid
    assert v.flags[0] == "unstable: ttft_mean_s: CV 12.0% ≥ 10%"
    assert v.flags[1].startswith("token counts: 1 requests streamed 2 counted tokens but 8")


def test_warmup_is_ignored_by_validity() -> None:
    warm = rec([10, 20], phase="warmup", error="boom")
    v = judge([info(0, 1.0)], [warm, rec([10, 20], index=1)], workload(), [])
    assert v.valid


def test_a_prompt_the_runtime_did_not_prefill_invalidates() -> None:
    records = [rec([10, 20], prompt=128), rec([10, 20], index=1, prompt=12)]
    v = judge([info(0, 1.0)], records, workload(input_tokens=128), [])
    assert v.problems == [
        "1 of 2 requests prefilled 12 prompt tokens, not workload.input_tokens=128 "
        "(counted by engine)"
    ]
    assert judge([info(0, 1.0)], records[:1], workload(input_tokens=128), []).valid
    assert judge([info(0, 1.0)], records, workload(), []).valid  # no fixed length asked


def test_self_checks_flag_one_repetition_a_busy_client_and_contention() -> None:
    from harness.metrics.validity import self_checks

    lagging = RepetitionInfo("measure", 0, "closed_loop", 0, 1, 1, client={"loop_lag_max_s": 0.05})
    per_rep = {
        "client_cpu_cores": [0.95],
        "foreign_cpu_cores": [1.5],
        "gpu_foreign_procs_max": [2.0],
        "gpu_foreign_peak_bytes": [2**30],
    }
    flags = self_checks(workload(), per_rep, [lagging], client=True, external=False)
    assert flags == [
        "one repetition: no variance estimate (workload.repetitions=1)",
        "client busy: the harness's client used 0.95 cores in repetition 0 "
        "(> workload.max_client_cpu_cores=0.8); its timestamps may lag the server",
        "client lagged: its event loop woke up to 50.0 ms late (> workload.max_loop_lag_s=0.02)",
        "contention: processes outside the measured tree used 1.50 cores in repetition 0 "
        "(> workload.max_foreign_cpu_cores=0.25)",
        "contention: 2 other processes held the GPU (up to 1.00 GiB) in repetition 0",
    ]
    # an in-process engine is no client; an external server's CPU is among the "foreign"
    quiet = {"client_cpu_cores": [1.0, 1.0], "foreign_cpu_cores": [1.5, 0.1]}
    two = [info(0, 1.0), info(1, 1.0)]
    assert self_checks(workload(), quiet, two, client=False, external=True) == []

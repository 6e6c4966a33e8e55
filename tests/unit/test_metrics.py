import pytest

from harness.metrics.derive import (
    derive,
    e2e_s,
    itl_chunk_s,
    itl_max_s,
    itl_token_s,
    meets_slo,
    repetition,
    send_lag_s,
    tpot_s,
    ttfct_s,
    ttft_s,
)
from tests.unit.events_builder import rec


def test_request_level_definitions() -> None:
    r = rec([100, 110, 130, 160])  # 4 tokens, sent at 0
    assert ttft_s(r) == pytest.approx(0.100)
    assert ttfct_s(r) == pytest.approx(0.100)
    assert e2e_s(r) == pytest.approx(0.160)
    assert tpot_s(r) == pytest.approx(0.060 / 3)
    assert itl_token_s(r) == pytest.approx([0.010, 0.020, 0.030])
    assert itl_chunk_s(r) == pytest.approx([0.010, 0.020, 0.030])
    assert itl_max_s(r) == pytest.approx(0.030)


def test_multi_token_chunks_give_two_different_itl_series() -> None:
    # 2 tokens at 50 ms, 3 tokens at 80 ms, 1 token at 90 ms
    r = rec([50, 80, 90], tokens=[2, 3, 1])
    assert itl_token_s(r) == pytest.approx([0.010, 0.010, 0.010, 0.010])
    assert itl_chunk_s(r) == pytest.approx([0.030, 0.010])
    assert tpot_s(r) == pytest.approx(0.040 / 5)  # (e2e - ttft) / (n - 1), n = 6


def test_empty_chunks_and_reasoning_are_not_first_tokens() -> None:
    # role-only chunk at 5 ms (0 tokens), reasoning from 40 ms, content from 70 ms
    r = rec([5, 40, 70, 80], tokens=[0, 1, 1, 1], content_ms=70)
    assert ttft_s(r) == pytest.approx(0.040)
    assert ttfct_s(r) == pytest.approx(0.070)
    assert e2e_s(r) == pytest.approx(0.080)
    assert itl_chunk_s(r) == pytest.approx([0.030, 0.010])


def test_offline_records_have_no_streaming_latencies() -> None:
    r = rec([500], tokens=[64], streamed=False, send=100)
    assert ttft_s(r) is None and tpot_s(r) is None and itl_token_s(r) == []
    assert e2e_s(r) == pytest.approx(0.400)


def test_send_lag_excludes_the_wait_for_a_slot() -> None:
    r = rec([90], scheduled=10, queue=30, send=42)
    assert send_lag_s(r) == pytest.approx(0.002)


def test_slo_needs_every_threshold_and_defined_values() -> None:
    r = rec([100, 110, 130, 160])
    assert meets_slo(r, {"ttft_s": 0.1, "tpot_s": 0.03})
    assert not meets_slo(r, {"ttft_s": 0.099})
    assert not meets_slo(rec([500], tokens=[4], streamed=False), {"ttft_s": 10})
    assert not meets_slo(rec([], tokens=[], error="boom"), {"e2e_s": 10})


def test_repetition_rates_over_the_window() -> None:
    a = rec([100, 200], send=0, prompt=10)  # 2 tokens
    b = rec([300, 400, 500], index=1, send=200, prompt=6)  # 3 tokens
    m = repetition([a, b], {"ttft_s": 0.1})
    assert m["window_s"] == pytest.approx(0.5)
    assert m["output_throughput_tok_s"] == pytest.approx(5 / 0.5)
    assert m["input_throughput_tok_s"] == pytest.approx(16 / 0.5)
    assert m["total_throughput_tok_s"] == pytest.approx(21 / 0.5)
    assert m["request_throughput_req_s"] == pytest.approx(2 / 0.5)
    assert m["goodput_req_s"] == pytest.approx(2 / 0.5)  # TTFTs 100 ms and 100 ms
    assert m["goodput_fraction"] == 1.0
    # decode: (1 + 2) tokens over (0.1 + 0.2) s
    assert m["decode_tok_s"] == pytest.approx(10.0)


def test_warmup_requests_inside_a_repetition_are_left_out() -> None:
    warm = rec([1000, 2000], phase="warmup", send=0)
    real = rec([2100, 2200], index=1, send=2000)
    m = repetition([warm, real], {})
    assert m["window_s"] == pytest.approx(0.2)
    assert m["requests"] == 1


def test_derive_summarizes_repetitions_with_ci() -> None:
    warm = rec([1000, 2000], phase="warmup")  # very slow: must not count
    reps = [rec([10, 20], rep=0), rec([20, 40], rep=1), rec([10, 25], rep=2)]
    d = derive([warm, *reps])
    assert d.per_rep["output_throughput_tok_s"] == pytest.approx([100.0, 50.0, 80.0])
    m = d.metrics
    assert m["output_throughput_tok_s"] == pytest.approx(230 / 3)
    assert m["output_throughput_tok_s_median"] == pytest.approx(80.0)
    std = 25.16611478
    assert m["output_throughput_tok_s_std"] == pytest.approx(std)
    assert m["output_throughput_tok_s_cv"] == pytest.approx(std / (230 / 3))
    half = 4.302652729749464 * std / 3**0.5
    assert m["output_throughput_tok_s_ci95_lo"] == pytest.approx(230 / 3 - half)
    assert m["output_throughput_tok_s_ci95_hi"] == pytest.approx(230 / 3 + half)
    assert m["requests"] == 3 and m["repetitions"] == 3 and m["ttft_samples"] == 3
    assert any(u.startswith("output_throughput_tok_s: CV") for u in d.unstable)


def test_percentiles_need_enough_samples() -> None:
    records = [rec([10 + i, 20 + i], index=i, send=0) for i in range(30)]
    d = derive(records)
    assert d.metrics["ttft_p50_s"] == pytest.approx(0.0245)
    assert d.metrics["ttft_p90_s"] == pytest.approx(0.0361)  # type 7: 0.010 + 26.1 ms
    assert "ttft_p95_s" not in d.metrics
    assert d.absent["ttft_p95_s"] == "30 samples, p95 needs >= 59"
    assert d.absent["ttft_p99_s"] == "30 samples, p99 needs >= 299"
    assert d.metrics["ttft_max_s"] == pytest.approx(0.039)
    assert d.absent["goodput_req_s"] == "no SLO configured (workload.slo)"


def test_token_count_mismatch_is_measured() -> None:
    ok = rec([10, 20])
    coalesced = rec([10, 20], index=1, output=8, source="server_usage")
    assert derive([ok, coalesced]).metrics["token_count_mismatch_fraction"] == 0.5

import pytest

from harness.metrics import derive, e2e_s, itl_s, repetition, tpot_s, ttft_s
from harness.result import RequestRecord

MS = 1_000_000


def rec(chunks_ms, tokens=None, rep=0, index=0, phase="measure", target=None, error=None, send=0):
    tokens = tokens or [1] * len(chunks_ms)
    return RequestRecord(
        phase=phase,
        repetition=rep,
        index=index,
        prompt_tokens=5,
        target_tokens=target if target is not None else sum(tokens),
        output_tokens=sum(tokens),
        count_source="engine",
        t_send_ns=send * MS,
        chunk_ns=tuple(int(c * MS) for c in chunks_ms),
        chunk_tokens=tuple(tokens),
        error=error,
    )


def test_request_level_definitions() -> None:
    r = rec([100, 110, 130, 160])  # 4 tokens, issued at 0
    assert ttft_s(r) == pytest.approx(0.100)
    assert e2e_s(r) == pytest.approx(0.160)
    assert tpot_s(r) == pytest.approx(0.060 / 3)
    assert itl_s(r) == pytest.approx([0.010, 0.020, 0.030])


def test_itl_splits_a_chunk_gap_over_its_tokens() -> None:
    r = rec([50, 80], tokens=[2, 3])  # 3 tokens arrive 30 ms after the first chunk
    assert itl_s(r) == pytest.approx([0.010, 0.010, 0.010])
    assert tpot_s(r) == pytest.approx(0.030 / 4)


def test_repetition_throughput_over_the_window() -> None:
    a = rec([100, 200], send=0)  # 2 tokens
    b = rec([300, 400, 500], index=1, send=200)  # 3 tokens
    m = repetition([a, b])
    assert m["window_s"] == pytest.approx(0.5)
    assert m["output_throughput_tok_s"] == pytest.approx(5 / 0.5)
    assert m["request_throughput_req_s"] == pytest.approx(2 / 0.5)


def test_derive_excludes_warmup_and_keeps_reps_apart() -> None:
    warm = rec([1000, 2000], phase="warmup")  # very slow: must not count
    r0 = rec([10, 20], rep=0)
    r1 = rec([20, 40], rep=1)
    d = derive([warm, r0, r1])
    assert d.problems == []
    assert d.per_rep["output_throughput_tok_s"] == pytest.approx([100.0, 50.0])
    assert d.metrics["output_throughput_tok_s"] == pytest.approx(75.0)
    assert d.metrics["output_throughput_tok_s_std"] == pytest.approx(35.35534, rel=1e-5)
    assert d.metrics["ttft_p50_s"] == pytest.approx(0.015)  # pooled over r0 and r1
    assert d.metrics["requests"] == 2
    assert d.metrics["repetitions"] == 2
    assert d.metrics["ttft_samples"] == 2


def test_short_generation_and_errors_are_problems() -> None:
    short = rec([10, 20], target=4)
    failed = rec([], tokens=[], index=1, error="RuntimeError: boom")
    d = derive([short, failed])
    assert d.problems[0] == "1 of 2 requests failed: RuntimeError: boom"
    assert "did not produce the forced length" in d.problems[1]
    assert "2 of 4 tokens" in d.problems[1]
    assert d.metrics["requests"] == 1

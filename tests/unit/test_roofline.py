"""The decode roofline: its arithmetic, where its peak comes from, and when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.measure import bandwidth
from harness.metrics.roofline import decode_roofline


def test_bytes_per_step_are_the_weights_and_each_sequences_kv_at_the_mean_context() -> None:
    # 1 GB of weights, 100 KB of KV per token, 500-token prompts, 101 output tokens: the
    # cache holds 500 + 100/2 = 550 tokens on average; 4 sequences step together
    r = decode_roofline(1e9, 1e5, 500, 101, 20.0, 4, 1e12)
    assert r.mean_context == 550
    assert r.bytes_per_step == pytest.approx(1e9 + 4 * 1e5 * 550)
    assert r.achieved_bytes_s == pytest.approx((1e9 + 2.2e8) * 20)
    assert r.efficiency == pytest.approx(24.4e9 / 1e12)


def test_impossible_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        decode_roofline(1e9, 1e5, 500, 101, 0.0, 1, 1e12)


def test_the_host_bandwidth_is_measured_once_and_cached_by_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_measure(threads: int) -> float:
        calls.append(threads)
        return 12.5e9

    monkeypatch.setattr(bandwidth, "measure_read", fake_measure)
    first = bandwidth.host_bandwidth(tmp_path)
    second = bandwidth.host_bandwidth(tmp_path)
    assert first == second and first.bytes_s == 12.5e9 and len(calls) == 1
    stored = json.loads((tmp_path / "bandwidth" / f"{bandwidth.fingerprint()}.json").read_text())
    assert stored["bytes_s"] == 12.5e9 and stored["source"].startswith("measured: numpy")


def test_the_read_kernel_reports_a_plausible_bandwidth() -> None:
    # a small array (still past L2) read by one thread: at least 100 MB/s on any machine
    assert bandwidth.measure_read(1, array_bytes=64 * 2**20, trials=2) > 1e8

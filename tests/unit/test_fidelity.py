import dataclasses
import math

import numpy as np
import pytest

from harness.quality.fidelity import (
    CHUNK_TOKENS,
    FIDELITY_VERSION,
    Fidelity,
    FidelityAccumulator,
    check_compatible,
    fidelity,
    fidelity_from_logits,
    log_softmax,
)

# Two positions, three-token vocabulary; the scored tokens are 0 and 2.
P = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
Q = np.array([[0.25, 0.5, 0.25], [0.1, 0.4, 0.5]])
TOKENS = np.array([0, 2])
LN2 = math.log(2)
KLD0 = 0.5 * LN2 + 0.25 * math.log(0.5)  # = 0.25 ln 2; the third term is 0
KLD1 = 0.2 * LN2 + 0.3 * math.log(0.75)  # third term: 0.5 ln(0.5 / 0.5) = 0


def _random_logits(rng: np.random.Generator, n: int = 200, vocab: int = 500) -> np.ndarray:
    return (rng.standard_normal((n, vocab)) * 3).astype(np.float32)


def _assert_close(a: Fidelity, b: Fidelity) -> None:
    for name, value in dataclasses.asdict(b).items():
        if isinstance(value, float):
            assert getattr(a, name) == pytest.approx(value, rel=1e-12, abs=1e-15), name
        else:
            assert getattr(a, name) == value, name


def test_hand_computed_two_tokens() -> None:
    f = fidelity(np.log(P), np.log(Q), TOKENS)
    assert f.n_tokens == 2
    assert f.kld_mean == pytest.approx((KLD0 + KLD1) / 2, rel=1e-12)
    assert f.kld_max == pytest.approx(KLD0, rel=1e-12)
    assert f.kld_p99 == pytest.approx(KLD1 + 0.99 * (KLD0 - KLD1), rel=1e-12)  # type 7
    assert f.kld_mean_se == pytest.approx(abs(KLD0 - KLD1) / 2, rel=1e-12)  # s/√2 = |a−b|/2
    # argmax: 0 vs 1 (differ), 2 vs 2 (agree); se = √(0.5·0.5/1)
    assert (f.top1_agreement, f.top1_agreement_se) == (0.5, 0.5)
    # Δp = q(tok) − p(tok): 0.25 − 0.5 and 0.5 − 0.5
    assert f.delta_p_mean == pytest.approx(-0.125, rel=1e-12)
    assert f.delta_p_rms == pytest.approx(math.sqrt(0.25**2 / 2), rel=1e-12)
    # NLL base: ln 2, ln 2 → ppl 2; variant: ln 4, ln 2 → ppl √8; ratio √2
    assert f.ppl_base == pytest.approx(2.0, rel=1e-12)
    assert f.ppl_variant == pytest.approx(math.sqrt(8), rel=1e-12)
    assert f.ppl_ratio == pytest.approx(math.sqrt(2), rel=1e-12)
    # per-token ln ratios ln 2 and 0: mean ln2/2, s = ln2/√2, se = s/√2 = ln2/2
    assert f.ln_ppl_ratio == pytest.approx(LN2 / 2, rel=1e-12)
    assert f.ln_ppl_ratio_se == pytest.approx(LN2 / 2, rel=1e-12)
    assert f.version == FIDELITY_VERSION == "1"


def test_logits_path_equals_logprob_path() -> None:
    # logits are log-probs shifted by an arbitrary constant per row
    logits = np.log(P) + np.array([[3.0], [-7.0]])
    vlogits = np.log(Q) + np.array([[11.0], [0.5]])
    a = fidelity_from_logits(logits, vlogits, TOKENS)
    b = fidelity(np.log(P), np.log(Q), TOKENS)
    _assert_close(a, b)


def test_log_softmax_normalises_and_keeps_masked_entries() -> None:
    out = log_softmax(np.array([[1.0, 2.0, -np.inf], [1000.0, 1000.0, 1000.0]]))
    assert np.exp(out).sum(axis=1) == pytest.approx([1.0, 1.0])
    assert out[0, 2] == -np.inf
    assert out[1] == pytest.approx([-math.log(3)] * 3)  # no overflow at large logits


def test_identical_distributions() -> None:
    lp = log_softmax(_random_logits(np.random.default_rng(1)))
    tokens = np.random.default_rng(2).integers(0, lp.shape[1], lp.shape[0])
    f = fidelity(lp, lp, tokens)
    assert (f.kld_mean, f.kld_max, f.kld_p99) == (0.0, 0.0, 0.0)
    assert (f.top1_agreement, f.delta_p_mean, f.delta_p_rms) == (1.0, 0.0, 0.0)
    assert (f.ppl_ratio, f.ln_ppl_ratio, f.ln_ppl_ratio_se) == (1.0, 0.0, 0.0)
    assert f.ppl_base == f.ppl_variant


def test_zero_probability_in_baseline_counts_zero() -> None:
    # a masked token in the baseline (p = 0) adds nothing, and raises no 0·∞ warning
    base = np.array([[-LN2, -LN2, -np.inf]])
    var = np.log(np.array([[0.25, 0.25, 0.5]]))
    f = fidelity(base, var, np.array([0]))
    assert f.kld_mean == pytest.approx(LN2)
    assert f.kld_mean_se is None and f.top1_agreement_se is None  # undefined at one token


def test_chunked_accumulation_equals_one_shot() -> None:
    rng = np.random.default_rng(3)
    n = 3 * CHUNK_TOKENS + 17  # spans several internal blocks
    base = log_softmax(_random_logits(rng, n=n)).astype(np.float32)
    var = log_softmax(_random_logits(rng, n=n) * 0.2 + base).astype(np.float32)
    tokens = rng.integers(0, base.shape[1], n)
    one = fidelity(base, var, tokens)
    acc = FidelityAccumulator()
    for lo, hi in [(0, 5), (5, 100), (100, 101), (101, n)]:
        acc.add(base[lo:hi], var[lo:hi], tokens[lo:hi])
    chunked = acc.result()
    assert chunked.n_tokens == one.n_tokens == n
    _assert_close(chunked, one)


def test_more_noise_gives_larger_kld_and_lower_top1() -> None:
    rng = np.random.default_rng(4)
    logits = _random_logits(rng, n=300)
    tokens = rng.integers(0, logits.shape[1], logits.shape[0])
    noise = rng.standard_normal(logits.shape)
    results = [fidelity_from_logits(logits, logits + s * noise, tokens) for s in (0.05, 0.3, 1.5)]
    klds = [f.kld_mean for f in results]
    top1 = [f.top1_agreement for f in results]
    rms = [f.delta_p_rms for f in results]
    assert klds == sorted(klds) and len(set(klds)) == 3
    assert top1 == sorted(top1, reverse=True) and top1[0] > top1[-1]
    assert rms == sorted(rms)
    assert all(f.kld_p99 >= f.kld_mean and f.kld_max >= f.kld_p99 for f in results)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((49152, 32000, [1, 2], [1, 2]), r"vocab sizes differ \(base 49152, variant 32000\)"),
        ((10, 10, [1, 2, 3], [1, 2]), r"differ in length \(base 3, variant 2\)"),
        ((10, 10, [1, 2, 3, 4], [1, 5, 3, 6]), r"differ at position 1 \(base 2, variant 5\)"),
    ],
)
def test_check_compatible_rejects_mismatches(
    args: tuple[int, int, list[int], list[int]], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as err:
        check_compatible(*args)
    assert "KLD is meaningless across tokenizers" in str(err.value)
    assert "\n" not in str(err.value)


def test_check_compatible_accepts_equal_sides() -> None:
    check_compatible(10, 10, np.array([1, 2, 3]), [1, 2, 3])


def test_accumulator_rejects_mixed_vocab_and_bad_shapes() -> None:
    acc = FidelityAccumulator()
    acc.add(np.log(P), np.log(Q), TOKENS)
    with pytest.raises(ValueError, match="vocab size changed between chunks"):
        acc.add(np.zeros((1, 4)), np.zeros((1, 4)), np.array([0]))
    with pytest.raises(ValueError, match="must both be"):
        fidelity(np.log(P), np.log(Q[:1]), TOKENS)
    with pytest.raises(ValueError, match="token ids must lie in"):
        fidelity(np.log(P), np.log(Q), np.array([0, 3]))
    with pytest.raises(ValueError, match="integer ids"):
        fidelity(np.log(P), np.log(Q), np.array([0.0, 1.0]))


def test_raw_logits_passed_as_logprobs_are_rejected() -> None:
    logits = np.array([[2.0, 1.0, 0.5]])
    with pytest.raises(ValueError, match=r"not log-probabilities.*log_softmax"):
        fidelity(logits, logits, np.array([0]))


def test_empty_accumulator_raises() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        FidelityAccumulator().result()

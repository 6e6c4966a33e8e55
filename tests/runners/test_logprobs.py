"""Full next-token distributions from the runtimes that declare logits, checked against each
other and against their own greedy generation (the raw material of KL-divergence fidelity)."""

from pathlib import Path

import numpy as np
import pytest

from harness.artifacts.cache import ArtifactCache
from harness.artifacts.gguf_file import read_table
from harness.artifacts.quantize import materialize, plan
from harness.quality.fidelity import fidelity
from harness.quality.suites import load_suite
from runners import LoadSpec, LogitsAccess, Request, get_runner
from runners.hf import HFConfig
from runners.llama_cpp import LlamaCppConfig

pytestmark = pytest.mark.slow
TEXT = "The river town traded grain and salt with the villages upstream, and every spring"


def kld(base: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """Per-position KL(base || variant) from log-probabilities."""
    b = base.astype(np.float64)
    return (np.exp(b) * (b - variant.astype(np.float64))).sum(axis=1)


def gguf(smollm2: Path, cache: Path, precision: str) -> Path:
    steps = plan("gguf", precision, "smollm2-test", read_table(smollm2))
    return Path(materialize(steps, smollm2, ArtifactCache(cache), threads=2).path)


def llama(path: Path) -> object:
    runner = get_runner("llama_cpp")(LlamaCppConfig(n_ctx=512), LoadSpec(path, "cpu", 2))
    runner.load()
    return runner


def test_llama_cpp_and_transformers_agree_on_the_same_weights(
    smollm2: Path, model_cache: Path, hf_checkpoint: Path
) -> None:
    ll = llama(gguf(smollm2, model_cache, "f16"))
    hf = get_runner("hf")(HFConfig(), LoadSpec(hf_checkpoint, "cpu", 2, "none", "f32"))
    hf.load()
    try:
        assert isinstance(ll, LogitsAccess) and isinstance(hf, LogitsAccess)
        ids = ll.tokenize(TEXT)
        assert ids == hf.tokenize(TEXT)  # same vocabulary and pre-tokenizer
        a, b = ll.logprobs(ids), hf.logprobs(ids)
        assert a.shape == b.shape == (len(ids), 49152)
        assert np.allclose(np.exp(a).sum(axis=1), 1.0, atol=1e-3)
        # f16 GGUF vs bf16-stored weights computed in f32: the same model up to rounding
        assert kld(a, b).mean() < 0.02
        assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.9
        # the distribution's argmax is what greedy decoding produces next
        first = next(iter(ll.stream(Request(tuple(ids), 2))))[0]
        assert first == int(a[-1].argmax())
    finally:
        ll.close()
        hf.close()


def test_kld_grows_as_bits_shrink_on_the_shipped_corpus(smollm2: Path, model_cache: Path) -> None:
    corpus = load_suite().corpus_text()[:3000]
    reference = llama(gguf(smollm2, model_cache, "f16"))
    ids = reference.tokenize(corpus)[:384]
    base = reference.logprobs(ids)
    reference.close()
    means = {}
    for precision in ("q8_0", "q4_k_m", "q2_k"):
        runner = llama(gguf(smollm2, model_cache, precision))
        try:
            # score the second half of the window, as llama-perplexity does: row i predicts i+1
            scored = fidelity(base[192:-1], runner.logprobs(ids)[192:-1], np.array(ids[193:]))
            means[precision] = scored.kld_mean
            assert scored.ppl_ratio >= 0.95 and 0 < scored.top1_agreement <= 1
        finally:
            runner.close()
    assert means["q8_0"] < means["q4_k_m"] < means["q2_k"], means
    assert means["q8_0"] < 0.05

"""Reference-logit fidelity of a variant against its baseline over the same tokens (pure numpy).

Inputs per scored position t (rows of [n_tokens, n_vocab] arrays, any float dtype; each block of
``CHUNK_TOKENS`` rows is converted to float64, so the whole input is never copied at once):

- ``log p_t``: the baseline's log-probabilities, ``log q_t``: the variant's (log-softmax already
  applied; raw logits go through ``log_softmax`` or ``FidelityAccumulator.add_logits``);
- ``x_t``: the actual next token (the one whose probability is scored).

Per-token values (one float each, kept, so percentiles are exact):

- KLD_t = Σ_i p_t(i) · (log p_t(i) − log q_t(i)), float64, terms with p_t(i) = 0 count 0
  (unlike llama.cpp, which drops terms with log p < −16, so no tiny negative KLDs here);
- NLL_t = −log p_t(x_t) (baseline) and −log q_t(x_t) (variant);
- Δp_t = q_t(x_t) − p_t(x_t): positive means the variant gives the right token more mass;
- top-1 agreement: argmax q_t == argmax p_t (numpy argmax: first index on ties).

Aggregates (N = n_tokens; "se" is the standard error of a mean, s / √N with the sample std s,
i.e. llama.cpp's √((Σx²/N − mean²)/(N − 1)); ``None`` below two tokens):

- kld_mean, kld_mean_se, kld_p99 (type-7 linear interpolation, numpy's default), kld_max;
- top1_agreement = fraction agreeing, se √(p(1 − p)/(N − 1));
- delta_p_mean, delta_p_rms = √mean(Δp²);
- ppl_base = exp(mean NLL_base), ppl_variant = exp(mean NLL_variant),
  ppl_ratio = ppl_variant / ppl_base = exp(mean(NLL_variant − NLL_base)),
  ln_ppl_ratio = mean(NLL_variant − NLL_base) and ln_ppl_ratio_se = s(NLL_variant − NLL_base)/√N
  (the same as llama.cpp's √(σ_q² + σ_b² − 2·cov)).

Rows must be normalised: each row's probabilities must sum to 1 within ``NORM_TOLERANCE``
(loose enough for llama.cpp's uint16-coded log-probs, tight enough to catch raw logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Format history: "1" (first version: KLD mean/p99/max, top-1, Δp, perplexities).
FIDELITY_VERSION = "1"
CHUNK_TOKENS = 64  # rows converted to float64 at a time: 64 × 49,152 × 8 B ≈ 25 MB per temporary
NORM_TOLERANCE = 0.02  # allowed |Σ_i p(i) − 1| per row

F64 = NDArray[np.float64]
PER_TOKEN = ("kld", "nll_base", "nll_variant", "delta_p", "top1_agree")


@dataclass(frozen=True, slots=True)
class Fidelity:
    n_tokens: int
    kld_mean: float
    kld_mean_se: float | None  # s / √N
    kld_p99: float  # type-7 percentile of per-token KLD
    kld_max: float
    top1_agreement: float  # fraction of tokens with the same argmax
    top1_agreement_se: float | None  # √(p(1 − p)/(N − 1))
    delta_p_mean: float  # mean of q(tok) − p(tok)
    delta_p_rms: float  # √mean(Δp²)
    ppl_base: float
    ppl_variant: float
    ppl_ratio: float  # ppl_variant / ppl_base
    ln_ppl_ratio: float  # mean(NLL_variant − NLL_base)
    ln_ppl_ratio_se: float | None  # s(NLL_variant − NLL_base) / √N
    version: str = FIDELITY_VERSION


def log_softmax(logits: ArrayLike) -> F64:
    """Row-wise log-softmax in float64: x − max(x) − ln Σ exp(x − max(x)).

    Masked entries (−inf logits) stay −inf.
    """
    x = np.asarray(logits, dtype=np.float64)
    shift: F64 = x - np.max(x, axis=-1, keepdims=True)
    out: F64 = shift - np.log(np.sum(np.exp(shift), axis=-1, keepdims=True))
    return out


def check_compatible(
    base_vocab: int, variant_vocab: int, base_tokens: ArrayLike, variant_tokens: ArrayLike
) -> None:
    """Raise ValueError (one line) unless both sides share the vocabulary size and the tokens."""
    why = "KLD is meaningless across tokenizers"
    if base_vocab != variant_vocab:
        raise ValueError(f"vocab sizes differ (base {base_vocab}, variant {variant_vocab}): {why}")
    a, b = np.asarray(base_tokens).ravel(), np.asarray(variant_tokens).ravel()
    if a.size != b.size:
        raise ValueError(
            f"token sequences differ in length (base {a.size}, variant {b.size}): {why}"
        )
    diff = np.flatnonzero(a != b)
    if diff.size:
        i = int(diff[0])
        raise ValueError(
            f"token sequences differ at position {i} (base {a[i]}, variant {b[i]}) "
            f"and {diff.size - 1} more: {why}"
        )


class FidelityAccumulator:
    """Feed (baseline, variant, tokens) chunk by chunk; ``result()`` gives the ``Fidelity``.

    Keeps five floats per token (KLD, both NLLs, Δp, agreement), never the distributions.
    """

    def __init__(self) -> None:
        self.n_vocab: int | None = None
        self._parts: list[F64] = []  # blocks of shape [5, n]: kld, nll_b, nll_q, dp, agree

    def add(self, base_logprobs: ArrayLike, variant_logprobs: ArrayLike, tokens: ArrayLike) -> None:
        """Add rows of log-probabilities (log-softmax applied) and their next-token ids."""
        self._add(base_logprobs, variant_logprobs, tokens, normalise=False)

    def add_logits(
        self, base_logits: ArrayLike, variant_logits: ArrayLike, tokens: ArrayLike
    ) -> None:
        """Add rows of raw logits; ``log_softmax`` is applied one block at a time."""
        self._add(base_logits, variant_logits, tokens, normalise=True)

    def _add(
        self, base: ArrayLike, variant: ArrayLike, tokens: ArrayLike, *, normalise: bool
    ) -> None:
        lp_all, lq_all = np.asarray(base), np.asarray(variant)
        tok_all = _check_chunk(lp_all, lq_all, np.asarray(tokens), self.n_vocab)
        self.n_vocab = lp_all.shape[1]
        for start in range(0, tok_all.size, CHUNK_TOKENS):
            rows = slice(start, start + CHUNK_TOKENS)
            if normalise:
                lp, lq = log_softmax(lp_all[rows]), log_softmax(lq_all[rows])
            else:
                lp = lp_all[rows].astype(np.float64)
                lq = lq_all[rows].astype(np.float64)
            self._parts.append(_per_token(lp, lq, tok_all[rows], check=not normalise))

    def per_token(self) -> dict[str, F64]:
        """The raw per-token values every aggregate is derived from (kept as an artifact)."""
        if not self._parts:
            return {name: np.empty(0) for name in PER_TOKEN}
        rows = np.concatenate(self._parts, axis=1)
        return {name: rows[i] for i, name in enumerate(PER_TOKEN)}

    def result(self) -> Fidelity:
        """Aggregate every token added so far (ValueError when none was added)."""
        if not self._parts:
            raise ValueError("no tokens were added: fidelity needs at least one scored token")
        kld, nll_b, nll_q, dp, agree = np.concatenate(self._parts, axis=1)
        n = kld.size
        top1 = float(agree.mean())
        ln_ratio = nll_q - nll_b
        return Fidelity(
            n_tokens=n,
            kld_mean=float(kld.mean()),
            kld_mean_se=_se(kld),
            kld_p99=float(np.percentile(kld, 99)),
            kld_max=float(kld.max()),
            top1_agreement=top1,
            top1_agreement_se=math.sqrt(top1 * (1 - top1) / (n - 1)) if n > 1 else None,
            delta_p_mean=float(dp.mean()),
            delta_p_rms=math.sqrt(float(np.mean(dp * dp))),
            ppl_base=math.exp(float(nll_b.mean())),
            ppl_variant=math.exp(float(nll_q.mean())),
            ppl_ratio=math.exp(float(ln_ratio.mean())),
            ln_ppl_ratio=float(ln_ratio.mean()),
            ln_ppl_ratio_se=_se(ln_ratio),
        )


def fidelity(base_logprobs: ArrayLike, variant_logprobs: ArrayLike, tokens: ArrayLike) -> Fidelity:
    """One-shot ``Fidelity`` from [n_tokens, n_vocab] log-probabilities (processed in blocks)."""
    acc = FidelityAccumulator()
    acc.add(base_logprobs, variant_logprobs, tokens)
    return acc.result()


def fidelity_from_logits(
    base_logits: ArrayLike, variant_logits: ArrayLike, tokens: ArrayLike
) -> Fidelity:
    """One-shot ``Fidelity`` from raw [n_tokens, n_vocab] logits (log-softmax per block)."""
    acc = FidelityAccumulator()
    acc.add_logits(base_logits, variant_logits, tokens)
    return acc.result()


def _check_chunk(
    lp: NDArray[Any], lq: NDArray[Any], tokens: NDArray[Any], n_vocab: int | None
) -> NDArray[np.intp]:
    if lp.ndim != 2 or lp.shape != lq.shape:
        raise ValueError(
            f"baseline {lp.shape} and variant {lq.shape} must both be [n_tokens, n_vocab]"
        )
    if n_vocab is not None and lp.shape[1] != n_vocab:
        raise ValueError(f"vocab size changed between chunks ({n_vocab} → {lp.shape[1]})")
    if tokens.shape != (lp.shape[0],) or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens must be {lp.shape[0]} integer ids, got shape {tokens.shape} {tokens.dtype}"
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= lp.shape[1]):
        raise ValueError(f"token ids must lie in [0, {lp.shape[1]})")
    return tokens.astype(np.intp)


def _per_token(lp: F64, lq: F64, tok: NDArray[np.intp], *, check: bool) -> F64:
    """Rows [kld, nll_base, nll_variant, Δp, agree] for one block (see module docstring)."""
    p = np.exp(lp)
    if check:
        _check_normalised(p, "baseline")
        _check_normalised(np.exp(lq), "variant")
    with np.errstate(invalid="ignore"):  # 0 · ∞ where p = 0: those terms are masked to 0
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    rows = np.arange(tok.size)
    lp_tok, lq_tok = lp[rows, tok], lq[rows, tok]
    agree = np.argmax(lp, axis=1) == np.argmax(lq, axis=1)
    return np.stack(
        [terms.sum(axis=1), -lp_tok, -lq_tok, np.exp(lq_tok) - np.exp(lp_tok), agree.astype(float)]
    )


def _check_normalised(probs: F64, side: str) -> None:
    err = np.abs(probs.sum(axis=1) - 1)
    if err.size and not float(err.max()) <= NORM_TOLERANCE:  # also catches NaN
        raise ValueError(
            f"{side} rows are not log-probabilities (max |Σp − 1| = {float(err.max()):.3g}); "
            "pass raw logits through log_softmax or add_logits"
        )


def _se(x: F64) -> float | None:
    """Standard error of the mean, s / √N with the sample std (ddof = 1); None below N = 2.

    Infinite when a value is (a variant giving probability 0 to a token the baseline allows).
    """
    if x.size < 2:
        return None
    if not np.all(np.isfinite(x)):
        return math.inf
    return float(np.std(x, ddof=1) / math.sqrt(x.size))

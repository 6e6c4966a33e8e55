"""Prompts cut to an exact token count by a tokenizer the harness does not own."""

import pytest

from runners.prompt_fit import fit_text


def words(text: str) -> int:
    """A toy tokenizer: a BOS, one token per word, two per word longer than five letters."""
    return 1 + sum(2 if len(w) > 5 else 1 for w in text.split())


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 128])
def test_fitted_text_counts_exactly_n(n: int) -> None:
    text = fit_text("Explain why the sky is blue", n, words)
    assert words(text) == n
    assert "Explain why the sky is blue".startswith(text[:27])  # a prefix of the repeats


def test_blank_prompt_is_filled_and_impossible_lengths_are_refused() -> None:
    assert words(fit_text("   ", 5, words)) == 5
    with pytest.raises(ValueError, match="0 tokens"):
        fit_text("a", 0, words)
    with pytest.raises(RuntimeError, match=r"exactly 3 tokens.*workload\.input_tokens"):
        fit_text("longword", 3, lambda t: 2 * len(t.split()))  # only even counts exist

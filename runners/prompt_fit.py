"""Prompts of an exact token length for a server that is sent text.

A server runner that cannot send token ids sends text, and the server tokenizes it: tiling ids
client-side (as the in-process runners do) says nothing about what the server prefills. So the
text itself is built to the length: the prompt is repeated until the server's tokenizer counts
at least ``n`` tokens, then cut at the shortest character prefix that counts ``n`` (token counts
of prefixes grow by one or two per character, so a binary search lands on it, and a few
characters further settle a two-token step). ``count`` is the server's own tokenizer (its
tokenize endpoint), so the length is the server's, not a guess from another tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable

FILLER = "Hello"  # repeated when the prompt is blank
MAX_STEPS = 16  # characters tried past the binary search's landing point


def fit_text(text: str, n: int, count: Callable[[str], int]) -> str:
    """The shortest prefix of ``text`` repeated that ``count`` says is exactly ``n`` tokens."""
    if n < 1:
        raise ValueError(f"a prompt of {n} tokens cannot be built")
    unit = text if text.strip() else FILLER
    tiled = unit
    while count(tiled) < n:
        tiled = f"{tiled} {tiled}"  # doubling: log2(n) tokenize calls
    lo, hi = 0, len(tiled)  # invariant: count(tiled[:hi]) >= n
    while lo < hi:
        mid = (lo + hi) // 2
        if count(tiled[:mid]) >= n:
            hi = mid
        else:
            lo = mid + 1
    for end in range(lo, min(lo + MAX_STEPS, len(tiled)) + 1):
        if count(tiled[:end]) == n:
            return tiled[:end]
    raise RuntimeError(
        f"no prefix of the repeated prompt {unit[:40]!r} is exactly {n} tokens for this "
        "server's tokenizer; set workload.input_tokens to a nearby value or "
        "runtime.send_token_ids=true"
    )

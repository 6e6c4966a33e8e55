"""Are two cells on different runtimes measuring the same thing?

Runtimes differ silently in what they do to a request: one applies the chat template, another
sends the raw prompt; one adds a BOS token; one stops at EOS. Each runner declares its
effective generation settings; the harness adds what it measured (prompt and output token
counts per prompt, from the raw events). Cells of one sweep that share model and workload are
meant to be comparable, and any difference in these settings between them is a warning that
travels with the sweep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import mean

from harness.results.events import Phase, RequestRecord

# The settings every runner reports under these names (values are free text, but runners
# use the same words for the same behaviour so that equal means equal).
RUNNER_KEYS = ("chat_template", "sampling", "eos", "special_tokens", "prefix_cache")
MEASURED_KEYS = ("prompt_tokens", "output_tokens")
KEYS = RUNNER_KEYS + MEASURED_KEYS


def measured_settings(records: Sequence[RequestRecord]) -> dict[str, str]:
    """Token counts per prompt as the runtime counted them (mean over measured requests)."""
    by_prompt: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if r.phase == Phase.measure and r.ok:
            by_prompt[r.prompt_index].append(r)
    if not by_prompt:
        return {}

    def per_prompt(attr: str) -> str:
        values = [mean(getattr(r, attr) for r in by_prompt[i]) for i in sorted(by_prompt)]
        return ",".join(f"{v:g}" for v in values)

    return {
        "prompt_tokens": per_prompt("prompt_tokens"),
        "output_tokens": per_prompt("output_tokens"),
    }


def settings(runner: Mapping[str, str], records: Sequence[RequestRecord]) -> dict[str, str]:
    return {**{k: str(v) for k, v in runner.items()}, **measured_settings(records)}


def differences(
    cells: Sequence[tuple[str, str, Mapping[str, str]]],
) -> list[str]:
    """Warnings for cells that share a comparison group (``group``) but whose settings
    differ. ``cells`` holds (cell id, group, settings); cells without settings are ignored."""
    groups: dict[str, list[tuple[str, Mapping[str, str]]]] = defaultdict(list)
    for cell_id, group, s in cells:
        if s:
            groups[group].append((cell_id, s))
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        for key in KEYS:
            values: dict[str, list[str]] = defaultdict(list)
            for cell_id, s in members:
                values[s.get(key, "unreported")].append(cell_id)
            if len(values) > 1:
                shown = "; ".join(f"{v!r} in {', '.join(ids)}" for v, ids in sorted(values.items()))
                out.append(f"not equivalent: {key} differs between comparable cells: {shown}")
    return out

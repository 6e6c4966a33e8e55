from harness.metrics.equivalence import differences, measured_settings
from tests.unit.events_builder import rec


def test_measured_settings_give_token_counts_per_prompt() -> None:
    records = [
        rec([1, 2, 3, 4], index=0, prompt=12),
        rec([1, 2, 3, 4], index=1, prompt=15),
        rec([1, 2, 3, 4], index=0, prompt=12, rep=1),
        rec([1, 2], index=0, prompt=99, phase="warmup"),
    ]
    s = measured_settings(records)
    assert s["prompt_tokens"] == "12,15"
    assert s["output_tokens"] == "4,4"


def test_identical_settings_raise_no_warning() -> None:
    same = {"chat_template": "none (raw prompt)", "prompt_tokens": "12,15"}
    assert differences([("a", "g", same), ("b", "g", dict(same))]) == []


def test_differences_within_a_group_are_named_with_their_cells() -> None:
    a = {"chat_template": "none (raw prompt)", "prompt_tokens": "13,16"}
    b = {"chat_template": "none (raw prompt)", "prompt_tokens": "12,15"}
    c = {"chat_template": "server applies it", "prompt_tokens": "30,33"}
    out = differences([("llama", "g", a), ("hf", "g", b), ("other", "h", c)])
    assert out == [
        "not equivalent: prompt_tokens differs between comparable cells: "
        "'12,15' in hf; '13,16' in llama"
    ]


def test_cells_without_settings_are_ignored() -> None:
    assert differences([("a", "g", {"eos": "x"}), ("b", "g", {})]) == []

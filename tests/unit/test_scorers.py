"""Scorers on hand-written outputs, and every shipped item's reference answer scores as correct."""

import json
from collections.abc import Mapping
from typing import Any

import pytest

from harness.quality.scorers import (
    SCORER_VERSIONS,
    ChoiceLogprobs,
    check_constraint,
    extract_json_block,
    loose_variants,
    schema_errors,
    score,
    score_arithmetic,
    score_instructions,
    score_json,
    score_long_context,
    score_multiple_choice,
)
from harness.quality.suites import Suite, load_suite

ARITH = {"id": "a", "answer": 1234}


@pytest.fixture(scope="module")
def full() -> Suite:
    return load_suite("core", "full")


# ----- arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        ("So 1000 + 234 = 1234.\n#### 1234", True, True),
        ("#### $1,234", True, True),
        ("#### 1234.0", True, True),
        ("#### 1233", False, False),
        ("The answer is 1,234 apples.", False, True),  # strict fails, lenient passes
        ("#### 1234 but wait, it is 1235", True, False),
        ("no number here", False, False),
        ("#### -1234", False, False),
    ],
)
def test_arithmetic(text: str, strict: bool, lenient: bool) -> None:
    result = score_arithmetic(text, ARITH)
    assert (result["strict"], result["lenient"], result["correct"]) == (strict, lenient, strict)
    assert result["scorer_version"] == SCORER_VERSIONS["arithmetic"]


def test_arithmetic_only_joins_thousands_groups() -> None:
    assert score_arithmetic("values 1,2,3 then 7", {"answer": 7})["lenient_value"] == "7"
    assert score_arithmetic("#### 12,345,678", {"answer": 12345678})["strict"]


# ----- json -------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["name", "born", "height", "plan", "langs"],
    "properties": {
        "name": {"type": "string"},
        "born": {"type": "string", "format": "date"},
        "height": {"type": "number"},
        "plan": {"type": "string", "enum": ["basic", "premium"]},
        "langs": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
EXPECTED = {
    "name": "Ana Berg",
    "born": "2020-02-29",
    "height": 1.5,
    "plan": "basic",
    "langs": ["x"],
}
JSON_ITEM = {"expected": EXPECTED, "schema": SCHEMA}


def test_json_right_answer_inside_chatter() -> None:
    text = 'Sure! {"name": "Ana Berg", "born": "2020-02-29", "height": 1.50, "plan": "basic", '
    result = score_json(text + '"langs": ["x"]} Hope that helps {"a": 1}', JSON_ITEM)
    assert result == {
        "correct": True,
        "valid": True,
        "schema_valid": True,
        "schema_error": None,
        "field_match": 1.0,
        "record_exact": True,
        "scorer_version": SCORER_VERSIONS["json"],
    }


def test_json_invalid() -> None:
    for text in ("no braces", '{"name": "Ana"', "{'name': 'Ana'}", "[1, 2]"):
        result = score_json(text, JSON_ITEM)
        assert (result["valid"], result["schema_valid"], result["field_match"]) == (False, False, 0)
        assert not result["correct"]


def test_json_schema_violation_with_partial_field_match() -> None:
    wrong = {**EXPECTED, "plan": "gold", "height": "1.5"}
    result = score_json(json.dumps(wrong), JSON_ITEM)
    assert result["valid"] and not result["schema_valid"] and not result["correct"]
    assert result["field_match"] == pytest.approx(3 / 5)
    assert result["schema_error"] == "$.height: expected number"


def test_json_schema_valid_but_wrong_value() -> None:
    result = score_json(json.dumps({**EXPECTED, "name": "Ana Berk"}), JSON_ITEM)
    assert result["schema_valid"] and result["field_match"] == 0.8 and not result["record_exact"]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({**EXPECTED, "extra": 1}, "$: unexpected 'extra'"),
        ({k: v for k, v in EXPECTED.items() if k != "born"}, "$: missing 'born'"),
        ({**EXPECTED, "born": "2021-02-29"}, "$.born: '2021-02-29' is not an ISO date"),
        ({**EXPECTED, "langs": ["x", 3]}, "$.langs[1]: expected string"),
        ({**EXPECTED, "height": True}, "$.height: expected number"),
    ],
)
def test_schema_validator(value: Mapping[str, Any], error: str) -> None:
    assert schema_errors(value, SCHEMA) == [error]


def test_schema_validator_refuses_unknown_keywords() -> None:
    with pytest.raises(ValueError, match="minLength"):
        schema_errors("x", {"type": "string", "minLength": 2})


def test_extraction_ignores_braces_inside_strings() -> None:
    assert extract_json_block('x {"a": "}\\"{", "b": {}} }') == '{"a": "}\\"{", "b": {}}'


# ----- instructions -----------------------------------------------------------------------------

CASES = [
    ({"type": "no_comma"}, "one two three", "one, two"),
    ({"type": "lowercase"}, "all lower 123", "Not lower"),
    ({"type": "word_count_min", "n": 3}, "one two three", "one two"),
    ({"type": "word_count_max", "n": 3}, "don't stop-now ok", "one two three four"),
    ({"type": "include_word", "word": "river"}, "The River bends", "the rivers bend"),
    ({"type": "exclude_word", "word": "good"}, "goods are great", "a Good day"),
    ({"type": "end_phrase", "phrase": "That is all."}, "Done.\nthat is all.", "That is all. ok"),
    ({"type": "bullets", "n": 2}, "intro\n* one\n- two", "* one\n* two\n* three"),
    ({"type": "wrap_json", "n": 2}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ({"type": "wrap_quotes"}, ' "quoted" ', '"half'),
    ({"type": "title"}, "<<my title>>\nbody", "<<>> body"),
]


@pytest.mark.parametrize(("spec", "good", "bad"), CASES, ids=[c[0]["type"] for c in CASES])
def test_each_instruction_type(spec: dict[str, Any], good: str, bad: str) -> None:
    assert check_constraint(good, spec)
    assert not check_constraint(bad, spec)


def test_instructions_strict_fails_but_loose_passes() -> None:
    item = {"constraints": [{"type": "wrap_json"}, {"type": "no_comma"}]}
    text = 'Here is the JSON:\n{"answer": "**yes**"}'
    result = score_instructions(text, item)
    assert result["strict"] == [False, True] and result["loose"] == [True, True]
    assert (result["correct"], result["prompt_strict"], result["prompt_loose"]) == (
        False,
        False,
        True,
    )


def test_loose_variants() -> None:
    assert loose_variants("a\n*b*\nc") == [
        "a\n*b*\nc",
        "a\nb\nc",
        "*b*\nc",
        "b\nc",
        "a\n*b*",
        "a\nb",
        "*b*",
        "b",
    ]


# ----- long_context and multiple_choice ---------------------------------------------------------


def test_long_context() -> None:
    item = {"answers": ["7654321"]}
    assert score_long_context(" 7654321.", item)["correct"]
    absent = score_long_context("the number is 7654322", item)
    assert (absent["correct"], absent["recall"]) == (False, 0.0)
    two = score_long_context("ABC-1 only", {"answers": ["abc-1", "xyz"]})
    assert (two["correct"], two["recall"]) == (False, 0.5)


MC = {"id": "mc", "choices": ["Oslo", "Santiago", "Rome", "Lima"], "answer": 1}


def test_multiple_choice_argmax_and_length_normalised_disagree() -> None:
    result = score_multiple_choice([-6.0, -8.0, -9.0, -7.0], [4, 8, 4, 4], MC)
    assert (result["pred"], result["pred_norm"]) == (0, 1)
    assert (result["acc"], result["acc_norm"], result["correct"]) == (False, True, False)


def test_multiple_choice_ties_and_bad_input() -> None:
    assert score_multiple_choice([-1.0, -1.0, -2.0, -3.0], [1, 1, 1, 1], MC)["pred"] == 0
    with pytest.raises(ValueError, match="4 choices, got 3"):
        score_multiple_choice([-1.0, -2.0, -3.0], [1, 1, 1], MC)


def test_dispatcher() -> None:
    assert score("arithmetic", "#### 1234", ARITH)["correct"]
    assert score("multiple_choice", ChoiceLogprobs((-9.0, -1.0, -5.0, -5.0), (4, 8, 4, 4)), MC)[
        "correct"
    ]
    with pytest.raises(ValueError, match="did you mean 'arithmetic'"):
        score("arithmetics", "1", ARITH)
    with pytest.raises(TypeError):
        score("multiple_choice", "Santiago", MC)
    with pytest.raises(TypeError):
        score("json", ChoiceLogprobs((0.0,), (1,)), JSON_ITEM)


# ----- every shipped item is answerable ---------------------------------------------------------


def ideal_instruction_answer(constraints: list[dict[str, Any]]) -> str:
    by_type = {c["type"]: c for c in constraints}
    words = ["a", "calm", "short", "answer"]
    words += [by_type["include_word"]["word"]] if "include_word" in by_type else []
    words += ["and", "more"] * by_type.get("word_count_min", {"n": 0})["n"]
    lines = [f"* point {i}" for i in range(by_type.get("bullets", {"n": 0})["n"])]
    body = "\n".join([" ".join(words), *lines])
    body = f"<<a title>>\n{body}" if "title" in by_type else body
    body = f"{body}\n{by_type['end_phrase']['phrase']}" if "end_phrase" in by_type else body
    body = body.lower() if "lowercase" in by_type else body
    if "wrap_json" in by_type:
        return json.dumps({"response": body})
    return f'"{body}"' if "wrap_quotes" in by_type else body


def ideal_output(slice_name: str, data: Mapping[str, Any]) -> str | ChoiceLogprobs:
    if slice_name == "arithmetic":
        return f"Working it out.\n#### {data['answer']}"
    if slice_name == "json":
        return json.dumps(data["expected"])
    if slice_name == "instructions":
        return ideal_instruction_answer(data["constraints"])
    if slice_name == "long_context":
        return f" {data['answers'][0]}."
    logprobs = tuple(0.0 if i == data["answer"] else -5.0 for i in range(len(data["choices"])))
    return ChoiceLogprobs(logprobs, tuple(len(c) + 1 for c in data["choices"]))


def test_every_shipped_item_scores_correct_with_its_reference_answer(full: Suite) -> None:
    for item in full.items:
        result = score(item.slice, ideal_output(item.slice, item.data), item.data)
        assert result["correct"], (item.id, result)
        assert all(v for k, v in result.items() if k in ("strict", "lenient", "schema_valid"))


def test_every_shipped_item_scores_wrong_with_an_empty_answer(full: Suite) -> None:
    for item in full.items_by_slice["arithmetic"] + full.items_by_slice["json"]:
        assert not score(item.slice, "", item.data)["correct"], item.id

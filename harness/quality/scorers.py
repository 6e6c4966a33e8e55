"""Pure, versioned scorers for the shipped eval slices (see harness.quality.suites).

Every scorer takes the model output and the item's record (a mapping, as stored in the suite's
JSONL) and returns a dict with ``correct`` (the slice's primary metric), the sub-metrics and
``scorer_version``. Bump a slice's version whenever its rule changes: scores with different
versions must never be compared.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Item = Mapping[str, Any]
Score = dict[str, Any]

# Version history: 1.0.0 -- first release, for all slices.
SCORER_VERSIONS: Final[Mapping[str, str]] = {
    "arithmetic": "1.0.0",
    "json": "1.0.0",
    "instructions": "1.0.0",
    "long_context": "1.0.0",
    "multiple_choice": "1.0.0",
}

# Per-item fields in [0, 1] that a slice can be gated on (``correct`` is each slice's primary).
SCORE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "arithmetic": ("correct", "strict", "lenient"),
    "json": ("correct", "valid", "schema_valid", "field_match", "record_exact"),
    "instructions": ("correct", "prompt_strict", "prompt_loose"),
    "long_context": ("correct", "recall"),
    "multiple_choice": ("correct", "acc", "acc_norm"),
}

_NUMBER = r"-?\d+(?:\.\d+)?"
_STRICT = re.compile(r"####\s*(" + _NUMBER + r")")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}]')  # a whole string literal, or a brace


@dataclass(frozen=True, slots=True)
class ChoiceLogprobs:
    """Summed log-probability of each choice's continuation and its length in characters."""

    logprobs: tuple[float, ...]
    lengths: tuple[int, ...]


# ----- arithmetic -------------------------------------------------------------------------------


def _normalise_numbers(text: str) -> str:
    """Drop thousands separators (1,234 -> 1234) and dollar signs."""
    return _THOUSANDS.sub("", text).replace("$", "")


def _equals(number: str | None, answer: int) -> bool:
    return number is not None and math.isclose(float(number), answer, abs_tol=1e-9)


def score_arithmetic(text: str, item: Item) -> Score:
    """Strict: the number after ``####``; lenient: the last number anywhere in the text."""
    clean = _normalise_numbers(text)
    strict_match = _STRICT.search(clean)
    strict = strict_match[1] if strict_match else None
    numbers = re.findall(_NUMBER, clean)
    lenient = numbers[-1] if numbers else None
    answer = int(item["answer"])
    ok_strict, ok_lenient = _equals(strict, answer), _equals(lenient, answer)
    return {
        "correct": ok_strict,
        "strict": ok_strict,
        "lenient": ok_lenient,
        "strict_value": strict,
        "lenient_value": lenient,
        "scorer_version": SCORER_VERSIONS["arithmetic"],
    }


# ----- json -------------------------------------------------------------------------------------


def extract_json_block(text: str) -> str | None:
    """Extraction rule 1: the first balanced ``{...}`` block, braces inside strings ignored."""
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
    for match in _JSON_TOKENS.finditer(text, start):
        if match[0] in "{}":
            depth += 1 if match[0] == "{" else -1
            if depth == 0:
                return text[start : match.end()]
    return None


_TYPES: Final[Mapping[str, Callable[[object], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_KEYWORDS: Final = frozenset(
    ("type", "enum", "format", "required", "properties", "additionalProperties", "items")
)


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_object(value: dict[str, Any], schema: Item, path: str) -> list[str]:
    errors = [f"{path}: missing {k!r}" for k in schema.get("required", ()) if k not in value]
    props: Mapping[str, Any] = schema.get("properties", {})
    if schema.get("additionalProperties", True) is False:
        errors += [f"{path}: unexpected {k!r}" for k in value if k not in props]
    for key, sub in props.items():
        if key in value:
            errors += schema_errors(value[key], sub, f"{path}.{key}")
    return errors


def schema_errors(value: object, schema: Item, path: str = "$") -> list[str]:
    """Validate against the JSON Schema subset the suites ship (type, enum, format: date,
    required, properties, additionalProperties: false, items); other keywords raise."""
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} not supported by the validator")
    if "type" in schema and not _TYPES[schema["type"]](value):
        return [f"{path}: expected {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in enum"]
    if schema.get("format") == "date" and not _is_date(value):
        return [f"{path}: {value!r} is not an ISO date"]
    if isinstance(value, dict):
        return _check_object(value, schema, path)
    if isinstance(value, list) and "items" in schema:
        return [
            e
            for i, v in enumerate(value)
            for e in schema_errors(v, schema["items"], f"{path}[{i}]")
        ]
    return []


def _canonical(value: object) -> object:
    """Numbers compare by value (42.5 == 42.50), strings without outer whitespace."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value.strip() if isinstance(value, str) else value


def _parse_json(text: str) -> object | None:
    block = extract_json_block(text)
    if block is None:
        return None
    try:
        parsed: object = json.loads(block)
    except json.JSONDecodeError:
        return None
    return parsed


def score_json(text: str, item: Item) -> Score:
    """valid -> schema_valid -> field_match (fraction of expected keys equal) -> record_exact."""
    expected: Mapping[str, Any] = item["expected"]
    parsed = _parse_json(text)
    valid = isinstance(parsed, dict)
    errors = schema_errors(parsed, item["schema"]) if valid else ["no JSON object"]
    got: Mapping[str, Any] = parsed if isinstance(parsed, dict) else {}
    same = sum(k in got and _canonical(got[k]) == _canonical(v) for k, v in expected.items())
    exact = valid and _canonical(got) == _canonical(dict(expected))
    return {
        "correct": exact,
        "valid": valid,
        "schema_valid": not errors,
        "schema_error": errors[0] if errors else None,
        "field_match": same / len(expected),
        "record_exact": exact,
        "scorer_version": SCORER_VERSIONS["json"],
    }


# ----- instructions -----------------------------------------------------------------------------


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _bullets(text: str) -> int:
    return len(re.findall(r"^\s*(?:\*[^*]|-).*$", text, re.MULTILINE))


def _is_json(text: str) -> bool:
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.IGNORECASE)
    try:
        json.loads(body)
    except json.JSONDecodeError:
        return False
    return True


def _ends_with(text: str, phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(phrase.strip().lower())


_CHECKS: Final[Mapping[str, Callable[[str, Item], bool]]] = {
    "no_comma": lambda t, c: "," not in t,
    "lowercase": lambda t, c: t == t.lower(),
    "word_count_min": lambda t, c: len(_WORD.findall(t)) >= c["n"],
    "word_count_max": lambda t, c: len(_WORD.findall(t)) <= c["n"],
    "include_word": lambda t, c: _has_word(t, c["word"]),
    "exclude_word": lambda t, c: not _has_word(t, c["word"]),
    "end_phrase": lambda t, c: _ends_with(t, c["phrase"]),
    "bullets": lambda t, c: _bullets(t) == c["n"],
    "wrap_json": lambda t, c: _is_json(t),
    "wrap_quotes": lambda t, c: len(t.strip()) > 1 and t.strip()[0] == t.strip()[-1] == '"',
    "title": lambda t, c: re.search(r"<<[^\n]+>>", t) is not None,
}


def loose_variants(text: str) -> list[str]:
    """IFEval's loose responses: with/without the first and/or last line, with/without ``*``."""
    lines = text.split("\n")
    cut = ["\n".join(lines[a : len(lines) - b]) for a, b in ((0, 0), (1, 0), (0, 1), (1, 1))]
    return [v for c in cut for v in (c, c.replace("*", "")) if v.strip()]


def check_constraint(text: str, spec: Item) -> bool:
    """True when ``text`` satisfies one constraint spec ({"type": ..., params})."""
    return _CHECKS[spec["type"]](text, spec)


def score_instructions(text: str, item: Item) -> Score:
    """Per-constraint strict and loose pass lists; ``correct`` = prompt-level strict all-pass."""
    specs: Sequence[Item] = item["constraints"]
    strict = [check_constraint(text, s) for s in specs]
    variants = loose_variants(text)
    loose = [any(check_constraint(v, s) for v in variants) for s in specs]
    return {
        "correct": all(strict),
        "strict": strict,
        "loose": loose,
        "prompt_strict": all(strict),
        "prompt_loose": all(loose),
        "scorer_version": SCORER_VERSIONS["instructions"],
    }


# ----- long_context -----------------------------------------------------------------------------


def score_long_context(text: str, item: Item) -> Score:
    """string_match_all: fraction of needle values present in the output, case-insensitive."""
    answers: Sequence[str] = item["answers"]
    found = [a.lower() in text.lower() for a in answers]
    return {
        "correct": all(found),
        "recall": sum(found) / len(found),
        "scorer_version": SCORER_VERSIONS["long_context"],
    }


# ----- multiple_choice --------------------------------------------------------------------------


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first index wins ties


def score_multiple_choice(
    choice_logprobs: Sequence[float], choice_lengths: Sequence[int], item: Item
) -> Score:
    """acc: argmax of summed log-probs; acc_norm: argmax of log-prob / continuation characters."""
    n = len(item["choices"])
    if len(choice_logprobs) != n or len(choice_lengths) != n:
        raise ValueError(f"item {item['id']} has {n} choices, got {len(choice_logprobs)} scores")
    if min(choice_lengths) <= 0:
        raise ValueError(f"item {item['id']}: choice lengths must be positive")
    pred = _argmax(choice_logprobs)
    pred_norm = _argmax([lp / k for lp, k in zip(choice_logprobs, choice_lengths, strict=True)])
    answer = int(item["answer"])
    return {
        "correct": pred == answer,
        "acc": pred == answer,
        "acc_norm": pred_norm == answer,
        "pred": pred,
        "pred_norm": pred_norm,
        "scorer_version": SCORER_VERSIONS["multiple_choice"],
    }


# ----- dispatcher -------------------------------------------------------------------------------

_TEXT_SCORERS: Final[Mapping[str, Callable[[str, Item], Score]]] = {
    "arithmetic": score_arithmetic,
    "json": score_json,
    "instructions": score_instructions,
    "long_context": score_long_context,
}


def score(slice_name: str, output: str | ChoiceLogprobs, item: Item) -> Score:
    """Score one output: text for generation slices, ChoiceLogprobs for multiple_choice."""
    if slice_name == "multiple_choice":
        if not isinstance(output, ChoiceLogprobs):
            raise TypeError("multiple_choice is scored from ChoiceLogprobs, not text")
        return score_multiple_choice(output.logprobs, output.lengths, item)
    scorer = _TEXT_SCORERS.get(slice_name)
    if scorer is None:
        close = difflib.get_close_matches(slice_name, SCORER_VERSIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown slice {slice_name!r}; choose one of {sorted(SCORER_VERSIONS)}{hint}"
        )
    if not isinstance(output, str):
        raise TypeError(f"{slice_name} is scored from generated text, not {type(output).__name__}")
    return scorer(output, item)

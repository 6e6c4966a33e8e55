"""The shipped eval suite: hashes, byte-for-byte regeneration, levels, and no calibration leak."""

import ast
import hashlib
import json
import operator
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.quality.suites import EVALS_DIR, LEVEL_ITEMS, Suite, SuiteError, SuiteLevel, load_suite

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_eval_suites.py"
CORE = EVALS_DIR / "core"
SLICES = ("arithmetic", "json", "instructions", "long_context", "multiple_choice")


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def full() -> Suite:
    return load_suite("core", "full")


def test_every_file_matches_its_manifest_hash() -> None:
    manifest = json.loads((CORE / "manifest.json").read_text())
    assert manifest["suite"] == "core" and manifest["version"] == "1"
    assert sorted(manifest["files"]) == sorted(
        [f"{s}.jsonl" for s in SLICES] + ["corpus.txt", "calibration.txt"]
    )
    for fname, entry in manifest["files"].items():
        assert hashlib.sha256((CORE / fname).read_bytes()).hexdigest() == entry["sha256"], fname


def test_regenerating_reproduces_every_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "core"
    assert generate("--out", str(out)).returncode == 0
    shipped = sorted(p.name for p in CORE.iterdir())
    assert sorted(p.name for p in out.iterdir()) == shipped
    for name in shipped:
        assert (out / name).read_bytes() == (CORE / name).read_bytes(), name
    check = generate("--check")
    assert check.returncode == 0, check.stdout


def test_check_names_the_file_that_drifted(tmp_path: Path) -> None:
    copy = shutil.copytree(CORE, tmp_path / "core")
    (copy / "json.jsonl").write_bytes((copy / "json.jsonl").read_bytes() + b"\n")
    check = generate("--check", "--out", str(copy))
    assert check.returncode == 1
    assert "json.jsonl" in check.stdout and "arithmetic" not in check.stdout


def test_a_tampered_file_raises_naming_the_file_and_both_hashes(tmp_path: Path) -> None:
    copy = shutil.copytree(CORE, tmp_path / "core")
    corpus = copy / "corpus.txt"
    corpus.write_text(corpus.read_text().replace("Merrow", "Morrow", 1))
    expected = json.loads((copy / "manifest.json").read_text())["files"]["corpus.txt"]["sha256"]
    actual = hashlib.sha256(corpus.read_bytes()).hexdigest()
    with pytest.raises(SuiteError, match=f"corpus.txt.*{expected}.*{actual}") as err:
        load_suite("core", root=copy)
    assert "\n" not in str(err.value)


def test_a_missing_file_raises(tmp_path: Path) -> None:
    copy = shutil.copytree(CORE, tmp_path / "core")
    (copy / "multiple_choice.jsonl").unlink()
    with pytest.raises(SuiteError, match=r"multiple_choice\.jsonl.*missing"):
        load_suite("core", root=copy)


def test_unknown_suite_and_level_raise_with_choices() -> None:
    with pytest.raises(SuiteError, match=r"choose one of: core.*did you mean 'core'"):
        load_suite("cor")
    with pytest.raises(SuiteError, match="choose one of: full, smoke"):
        load_suite("core", "medium")


def test_smoke_and_full_sizes(full: Suite) -> None:
    smoke = load_suite()
    assert smoke.level is SuiteLevel.SMOKE and full.level is SuiteLevel.FULL
    assert smoke.slices == full.slices == SLICES
    assert {s: len(v) for s, v in smoke.items_by_slice.items()} == dict.fromkeys(SLICES, 20)
    assert {s: len(v) for s, v in full.items_by_slice.items()} == dict.fromkeys(SLICES, 200)
    assert LEVEL_ITEMS[SuiteLevel.SMOKE] == 20 and len(smoke.items) == 100
    assert [i.id for i in smoke.items_by_slice["json"]] == [f"json-{n:04d}" for n in range(20)]
    manifest_bytes = (CORE / "manifest.json").read_bytes()
    assert smoke.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert (smoke.name, smoke.version) == ("core", "1")


def test_smoke_prefix_covers_every_stratum() -> None:
    smoke = load_suite().items_by_slice
    assert {i.data["steps"] for i in smoke["arithmetic"]} == {2, 3, 4}
    cells = {(i.data["depth"], i.data["haystack_chars"]) for i in smoke["long_context"]}
    assert len(cells) == 9
    assert {i.data["template"] for i in smoke["multiple_choice"]} == {
        "arithmetic",
        "capital",
        "unit",
    }
    kinds = {c["type"] for i in smoke["instructions"] for c in i.data["constraints"]}
    assert len(kinds) == 11


def test_items_have_a_known_slice_and_unique_ids(full: Suite) -> None:
    ids = [item.id for item in full.items]
    assert len(ids) == len(set(ids)) == 1000
    for name, items in full.items_by_slice.items():
        assert all(item.slice == item.data["slice"] == name for item in items)
        assert all(item.prompt and item.prompt == item.data["prompt"] for item in items)


def test_long_context_haystacks_hit_their_character_sizes(full: Suite) -> None:
    for item in full.items_by_slice["long_context"]:
        size = item.data["haystack_chars"]
        assert size <= item.data["context_chars"] <= size * 1.25
        assert f"for {item.data['key']} is {item.data['answers'][0]}." in item.prompt


def test_texts_are_prose_of_the_expected_size(full: Suite) -> None:
    for text in (full.corpus_text(), full.calibration_text()):
        assert 40_000 <= len(text) <= 45_000
        words = re.findall(r"[a-z]+", text.lower())
        assert len(set(words)) > 150 and len(words) > 6_000


def sentences(text: str) -> set[str]:
    parts = (" ".join(s.lower().split()) for s in text.split("."))
    return {p for p in parts if p}


def ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_calibration_shares_no_sentence_or_8gram_with_eval_text(full: Suite) -> None:
    calibration = full.calibration_text()
    evals = [full.corpus_text(), *(item.prompt for item in full.items)]
    eval_sentences = set().union(*(sentences(t) for t in evals))
    eval_grams = set().union(*(ngrams(t) for t in evals))
    assert not sentences(calibration) & eval_sentences
    assert not ngrams(calibration) & eval_grams
    assert len(eval_grams) > 10_000  # the check has something to bite on


def evaluate(node: ast.expr) -> int:
    """Evaluate + - * on integer literals only (no eval())."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    assert isinstance(node, ast.BinOp), ast.dump(node)
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
    return ops[type(node.op)](evaluate(node.left), evaluate(node.right))


def test_expression_answers_are_right(full: Suite) -> None:
    exprs = [i for i in full.items_by_slice["arithmetic"] if i.data["form"] == "expression"]
    assert len(exprs) == 100
    for item in exprs:
        text = re.search(r"Compute (.*)\.\n", item.prompt)
        assert text is not None
        assert evaluate(ast.parse(text[1], mode="eval").body) == item.data["answer"], item.id
        assert text[1].count("(") == item.data["steps"] - 1
    answers = [i.data["answer"] for i in full.items_by_slice["arithmetic"]]
    assert min(answers) >= 0 and max(answers) < 20_000

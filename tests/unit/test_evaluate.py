"""The worker's eval: item selection, per-slice summaries, log-likelihood multiple choice, and
a planted regression found through the real path (run_eval on both sides, then the parent's
paired scorecard)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from harness.config.schema import EvalConfig, EvalLevel
from harness.quality.evaluate import (
    BASELINE,
    EVAL_DIR,
    FIDELITY_FILE,
    FIDELITY_METRICS,
    ITEMS_FILE,
    PER_TOKEN_FILE,
    SETTINGS_FILE,
    VARIANT,
    EvalOutput,
    EvalTask,
    FidelityInputs,
    choice_logprobs,
    run_eval,
    select_items,
    summarize,
)
from harness.quality.gate import compare
from harness.quality.reference import reference_path
from harness.quality.scorecard import Verdict
from harness.quality.suites import EvalItem, Suite, load_suite
from runners.base import Capabilities, Completion, LoadSpec
from runners.fake import FakeConfig, FakeRunner

SLICES = ("arithmetic", "json", "instructions", "long_context", "multiple_choice")


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite("core", "full")


def _fake(**kw: Any) -> FakeRunner:
    return FakeRunner(FakeConfig(**kw), LoadSpec(Path("x"), "cpu", 1))


# ----- select_items -----------------------------------------------------------------------------


def test_select_items_takes_a_prefix_of_each_slice(suite: Suite) -> None:
    got = select_items(suite, EvalConfig(level=EvalLevel.smoke, items=3))
    assert list(got) == list(SLICES)
    for name, items in got.items():
        assert items == suite.items_by_slice[name][:3]
        assert [i.id for i in items] == [f"{name}-{k:04d}" for k in range(3)]


def test_select_items_per_slice_overrides_items_and_none_means_all(suite: Suite) -> None:
    cfg = EvalConfig(
        level=EvalLevel.smoke, items=3, items_per_slice={"json": None, "multiple_choice": 7}
    )
    got = {name: len(items) for name, items in select_items(suite, cfg).items()}
    assert got == {
        "arithmetic": 3,
        "json": 200,
        "instructions": 3,
        "long_context": 3,
        "multiple_choice": 7,
    }
    every = select_items(suite, EvalConfig(level=EvalLevel.full))
    assert {name: len(items) for name, items in every.items()} == dict.fromkeys(SLICES, 200)


def test_select_items_honours_eval_slices_and_their_order(suite: Suite) -> None:
    cfg = EvalConfig(level=EvalLevel.smoke, slices=["multiple_choice", "json"], items=2)
    got = select_items(suite, cfg)
    assert list(got) == ["multiple_choice", "json"]
    assert [i.id for i in got["json"]] == ["json-0000", "json-0001"]


# ----- summarize --------------------------------------------------------------------------------


def _gen(score: dict[str, Any], output_tokens: int, finish: str) -> dict[str, Any]:
    return {"score": score, "output_tokens": output_tokens, "finish": finish, "seconds": 0.1}


def test_summarize_generation_slice_by_hand() -> None:
    rows = [
        _gen({"correct": True, "strict": True, "lenient": True, "strict_value": "3"}, 10, "stop"),
        _gen(
            {"correct": False, "strict": False, "lenient": True, "strict_value": None}, 20, "stop"
        ),
        _gen(
            {"correct": True, "strict": True, "lenient": False, "strict_value": "1"}, 60, "length"
        ),
        {"id": "x", "slice": "arithmetic", "error": "RuntimeError: boom"},
    ]
    got = summarize("arithmetic", rows, "correct")
    se = float(np.std([1.0, 0.0, 1.0], ddof=1) / np.sqrt(3))  # s = √(1/3), se = 1/3
    assert se == pytest.approx(1 / 3)
    assert got == pytest.approx(
        {
            "quality.arithmetic.n": 3.0,
            "quality.arithmetic.errors": 1.0,
            "quality.arithmetic.score": 2 / 3,
            "quality.arithmetic.se": 1 / 3,
            "quality.arithmetic.strict": 2 / 3,
            "quality.arithmetic.lenient": 2 / 3,
            "quality.arithmetic.output_tokens_mean": 30.0,
            "quality.arithmetic.cut_at_cap": 1 / 3,
        }
    )


def test_summarize_pools_list_fields_over_constraints() -> None:
    """Instruction-level accuracy pools every constraint (IFEval), not a mean of item means."""
    rows = [
        _gen(
            {
                "correct": False,
                "strict": [True, False],
                "loose": [True, True],
                "prompt_strict": False,
                "prompt_loose": True,
            },
            5,
            "stop",
        ),
        _gen(
            {
                "correct": True,
                "strict": [True],
                "loose": [True],
                "prompt_strict": True,
                "prompt_loose": True,
            },
            7,
            "stop",
        ),
    ]
    got = summarize("instructions", rows, "prompt_loose")
    assert got["quality.instructions.score"] == 1.0  # the gated metric: prompt_loose
    assert got["quality.instructions.strict"] == pytest.approx(2 / 3)  # not (1/2 + 1) / 2
    assert got["quality.instructions.loose"] == 1.0
    assert got["quality.instructions.prompt_strict"] == 0.5
    assert got["quality.instructions.se"] == 0.0
    assert got["quality.instructions.cut_at_cap"] == 0.0
    assert got["quality.instructions.output_tokens_mean"] == 6.0


def test_summarize_multiple_choice_has_no_generation_fields_and_skips_pred() -> None:
    rows = [
        {"score": {"correct": True, "acc": True, "acc_norm": False, "pred": 2, "pred_norm": 1}},
        {"score": {"correct": False, "acc": False, "acc_norm": False, "pred": 0, "pred_norm": 0}},
    ]
    got = summarize("multiple_choice", rows, "acc")
    assert got == pytest.approx(
        {
            "quality.multiple_choice.n": 2.0,
            "quality.multiple_choice.errors": 0.0,
            "quality.multiple_choice.score": 0.5,
            "quality.multiple_choice.se": 0.5,
            "quality.multiple_choice.acc": 0.5,
            "quality.multiple_choice.acc_norm": 0.0,
        }
    )


def test_summarize_only_errors_and_a_single_item() -> None:
    assert summarize("json", [{"error": "x"}, {"error": "y"}], "correct") == {
        "quality.json.n": 0.0,
        "quality.json.errors": 2.0,
    }
    one = summarize("json", [{"score": {"correct": True}}], "correct")
    assert one == {"quality.json.n": 1.0, "quality.json.errors": 0.0, "quality.json.score": 1.0}


# ----- choice_logprobs --------------------------------------------------------------------------


def _mc_item(prefix: str) -> EvalItem:
    data = {
        "id": "mc-1",
        "answer": 1,
        "choices": ["129", "Ottawa", "a b"],
        "continuation_prefix": prefix,
        "prompt": "Question: What is 94 + 33?\nAnswer:",
    }
    return EvalItem("mc-1", "multiple_choice", str(data["prompt"]), data)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_choice_logprobs_on_the_fake_runner_by_hand(noise: float) -> None:
    runner = _fake(logit_noise=noise)
    item = _mc_item(" ")
    context = item.prompt.split()  # the fake tokenises by words: id = word length
    assert runner.tokenize(item.prompt) == [len(w) for w in context]
    expected = []
    for choice in ("129", "Ottawa", "a b"):
        whole = [len(w) for w in (item.prompt + " " + choice).split()]
        rows = runner.logprobs(whole)
        expected.append(sum(float(rows[i - 1, whole[i]]) for i in range(len(context), len(whole))))
    got = choice_logprobs(runner, item)
    assert got.logprobs == pytest.approx(expected, rel=1e-6)
    assert got.lengths == (4, 7, 4)  # characters of " 129", " Ottawa", " a b"


def test_choice_logprobs_rescores_a_token_merged_across_the_boundary() -> None:
    """Without a separating space the last prompt word and the choice are one token: that
    token is scored (from the row before it), the context's own last token is not."""
    runner = _fake()
    item = _mc_item("")
    n_context = len(item.prompt.split())
    expected = []
    for choice in ("129", "Ottawa", "a b"):
        whole = [len(w) for w in (item.prompt + choice).split()]
        assert whole[n_context - 1] == len("Answer:" + choice.split()[0])
        rows = runner.logprobs(whole)
        expected.append(sum(float(rows[i - 1, whole[i]]) for i in range(n_context - 1, len(whole))))
    got = choice_logprobs(runner, item)
    assert got.logprobs == pytest.approx(expected, rel=1e-6)
    assert got.lengths == (3, 6, 3)


# ----- planted regression through the real eval path ---------------------------------------------

VOCAB = 256  # the oracle tokenises UTF-8 bytes
BIGRAMS = np.random.default_rng(0).normal(0.0, 2.0, (VOCAB, VOCAB))
FILLER = ("river", "stone", "cloud")


def follow(constraints: Sequence[Mapping[str, Any]]) -> str:
    """A response meeting every constraint of an instructions item (titles, bullets, word
    counts, wrappers) built from filler words."""
    c = {x["type"]: x for x in constraints}
    banned = c.get("exclude_word", {}).get("word", "").lower()
    filler = next(w for w in FILLER if w != banned)
    words = [c["include_word"]["word"]] if "include_word" in c else []
    words += [filler] * (c.get("word_count_min", {}).get("n", 3) - len(words))
    lines = ["<<notes>>"] if "title" in c else []
    lines.append(" ".join(words))
    lines += [f"* {filler}"] * c.get("bullets", {}).get("n", 0)
    if "end_phrase" in c:
        lines.append(c["end_phrase"]["phrase"])
    text = "\n".join(lines)
    if "lowercase" in c:
        text = text.lower()
    if "wrap_json" in c:
        text = json.dumps(text)
    if "wrap_quotes" in c:
        text = f'"{text}"'
    return text


def _answer(item: EvalItem) -> str:
    d = item.data
    if item.slice == "arithmetic":
        return f"Let me compute.\n#### {d['answer']}"
    if item.slice == "json":
        return json.dumps(d["expected"])
    if item.slice == "long_context":
        return " ".join(d["answers"])
    return follow(d["constraints"])


class Oracle:
    """A runner that answers every generation item right and puts almost all probability on
    the right multiple-choice continuation; elsewhere a fixed distribution over bytes."""

    name: ClassVar[str] = "oracle"
    capabilities: ClassVar[Capabilities] = FakeRunner.capabilities

    def __init__(self, suite: Suite) -> None:
        self.answers = {
            i.prompt: _answer(i)
            for s in suite.slices
            if s != "multiple_choice"
            for i in suite.items_by_slice[s]
        }
        self.right = {
            i.prompt + i.data["continuation_prefix"] + str(i.data["choices"][i.data["answer"]])
            for i in suite.items_by_slice["multiple_choice"]
        }

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        text = self.answers[prompt]
        return Completion(text, len(self.tokenize(prompt)), len(text.split()), "stop")

    def chat_template(self) -> str | None:
        return "{{ messages[0].content }}"

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """A fixed bigram table (distinct top-1 margins, so float16 rounding of the baseline's
        reference keeps its argmax), plus +30 on each next token of a right continuation."""
        logits = BIGRAMS[np.asarray(ids)].copy()
        if bytes(ids).decode(errors="replace") in self.right:
            logits[np.arange(len(ids) - 1), ids[1:]] += 30.0
        logits -= logits.max(axis=1, keepdims=True)
        out = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return out.astype(np.float32)


class Corrupting:
    """Delegates everything to ``inner`` but adds 1 to the final answer of the arithmetic
    prompts in ``targets``."""

    name: ClassVar[str] = "corrupting"
    capabilities: ClassVar[Capabilities] = FakeRunner.capabilities

    def __init__(self, inner: Oracle, targets: set[str]) -> None:
        self.inner = inner
        self.targets = targets

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        done = self.inner.complete(prompt, max_new_tokens, chat)
        if prompt not in self.targets:
            return done
        text = re.sub(r"#### (-?\d+)", lambda m: f"#### {int(m[1]) + 1}", done.text)
        return Completion(text, done.prompt_tokens, done.output_tokens, done.finish)

    def chat_template(self) -> str | None:
        return self.inner.chat_template()

    def logprobs(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        return self.inner.logprobs(ids)


CORRUPT_FRACTION = 0.3
SEEDS = (0, 1, 2)


def _eval_cfg() -> EvalConfig:
    return EvalConfig(level=EvalLevel.full, corpus_windows=2, window_tokens=64)


def _inputs(suite: Suite, cache: Path) -> FidelityInputs:
    return FidelityInputs(
        corpus=suite.corpus_text(),
        corpus_sha256=suite.file_sha256("corpus.txt"),
        artifact_sha256="f" * 64,
        runtime={"name": "oracle", "oracle": "1"},
        cache_dir=cache,
    )


def _items(cell: Path) -> list[dict[str, Any]]:
    """The items file without the timings, which differ between any two runs."""
    rows = [json.loads(line) for line in (cell / EVAL_DIR / ITEMS_FILE).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


class Runs:
    def __init__(self, root: Path, suite: Suite) -> None:
        self.root, self.suite = root, suite
        self.cfg = _eval_cfg()
        self.oracle = Oracle(suite)
        self.inputs = _inputs(suite, root / "cache")
        self.base = root / "base"
        self.base_out = run_eval(
            self.oracle, self.cfg, suite, EvalTask(BASELINE), self.inputs, self.base
        )
        key = self.base_out.tags["quality.reference_key"]
        self.task = EvalTask(VARIANT, reference_dir=str(reference_path(root / "cache", key)))
        self.corrupted: dict[int, list[str]] = {}
        self.variants: dict[str, tuple[Path, EvalOutput]] = {}

    def variant(self, name: str, runner: Any) -> tuple[Path, EvalOutput]:
        if name not in self.variants:
            cell = self.root / name
            out = run_eval(runner, self.cfg, self.suite, self.task, self.inputs, cell)
            self.variants[name] = (cell, out)
        return self.variants[name]

    def planted(self, seed: int) -> tuple[Path, EvalOutput]:
        items = self.suite.items_by_slice["arithmetic"]
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(items), int(CORRUPT_FRACTION * len(items)), replace=False)
        self.corrupted[seed] = sorted(items[i].id for i in chosen)
        targets = {items[i].prompt for i in chosen}
        return self.variant(f"planted{seed}", Corrupting(self.oracle, targets))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, suite: Suite) -> Runs:
    return Runs(tmp_path_factory.mktemp("eval"), suite)


def test_the_oracle_baseline_is_right_everywhere(runs: Runs) -> None:
    out = runs.base_out
    for name in SLICES:
        assert out.metrics[f"quality.{name}.n"] == 200.0
        assert out.metrics[f"quality.{name}.errors"] == 0.0
        assert out.metrics[f"quality.{name}.score"] == 1.0
    assert out.metrics["quality.multiple_choice.acc_norm"] == 1.0
    assert out.metrics["quality.instructions.loose"] == 1.0
    reason = "this cell is the baseline (its own reference)"
    assert out.absent == {f"fidelity.{m}": reason for m in FIDELITY_METRICS}
    assert out.flags == []
    assert out.tags["quality.role"] == BASELINE
    assert out.metrics["fidelity.n_tokens"] == 2 * (64 - 32 - 1)
    assert (runs.root / "cache" / "reference" / out.tags["quality.reference_key"]).is_dir()
    settings = json.loads((runs.base / EVAL_DIR / SETTINGS_FILE).read_text())
    assert settings["items"] == dict.fromkeys(SLICES, 200)
    assert len(_items(runs.base)) == 1000


@pytest.mark.parametrize("seed", SEEDS)
def test_a_planted_regression_fails_only_its_slice(runs: Runs, seed: int) -> None:
    cell, out = runs.planted(seed)
    lost = int(CORRUPT_FRACTION * 200)
    assert out.metrics["quality.arithmetic.score"] == pytest.approx(1 - CORRUPT_FRACTION)
    wrong = sorted(
        r["id"] for r in _items(cell) if r["slice"] == "arithmetic" and not r["score"]["correct"]
    )
    assert wrong == runs.corrupted[seed]
    # the variant scored its fidelity against the baseline's cached reference
    assert out.tags["quality.reference_key"] == runs.base_out.tags["quality.reference_key"]
    assert out.metrics["fidelity.top1_agreement"] == 1.0  # the same model: only float16 rounding
    assert out.metrics["fidelity.kld_mean"] == pytest.approx(0.0, abs=1e-5)
    assert out.metrics["fidelity.ppl_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert (cell / EVAL_DIR / FIDELITY_FILE).is_file() and (
        cell / EVAL_DIR / PER_TOKEN_FILE
    ).is_file()

    gated, card = compare(runs.cfg, runs.base / EVAL_DIR, cell, out.absent)
    assert card is not None
    verdicts = {r.slice: r.verdict for r in card.slices}
    assert verdicts == {
        name: Verdict.FAIL if name == "arithmetic" else Verdict.PASS for name in SLICES
    }
    assert card.verdict is Verdict.FAIL and card.reason == "failed: arithmetic"
    assert gated.tags["quality.verdict"] == "FAIL"
    assert gated.metrics["quality.arithmetic.delta"] == pytest.approx(-CORRUPT_FRACTION)
    assert gated.metrics["quality.arithmetic.flips_lost"] == float(lost)
    assert gated.metrics["quality.arithmetic.flips_gained"] == 0.0
    assert gated.metrics["quality.arithmetic.delta_ci_high"] < -0.05
    for name in SLICES[1:]:
        assert gated.metrics[f"quality.{name}.delta"] == 0.0
        assert gated.metrics[f"quality.{name}.flips_lost"] == 0.0
    assert gated.flags == []


def test_the_corrupted_items_differ_between_seeds(runs: Runs) -> None:
    for seed in SEEDS:
        runs.planted(seed)
    assert len({tuple(ids) for ids in runs.corrupted.values()}) == len(SEEDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_a_the_oracle_against_itself_passes_everywhere(runs: Runs, seed: int) -> None:
    cell, out = runs.variant("a_a", runs.oracle)
    assert _items(cell) == _items(runs.base)
    cfg = EvalConfig(level=EvalLevel.full, corpus_windows=2, window_tokens=64, seed=seed)
    gated, card = compare(cfg, runs.base / EVAL_DIR, cell, out.absent)
    assert card is not None and card.seed == seed
    assert card.verdict is Verdict.PASS and card.reason == "all 5 slices pass"
    assert all(r.verdict is Verdict.PASS and r.n == 200 for r in card.slices)
    assert all(gated.metrics[f"quality.{name}.delta"] == 0.0 for name in SLICES)
    assert out.metrics["fidelity.top1_agreement"] == 1.0


class NoLogits(FakeRunner):
    name: ClassVar[str] = "nologits"
    capabilities: ClassVar[Capabilities] = replace(FakeRunner.capabilities, logits=False)


def test_a_runtime_without_logits_records_why_and_runs_the_rest(
    suite: Suite, tmp_path: Path
) -> None:
    runner = NoLogits(FakeConfig(completion_text="#### 120"), LoadSpec(Path("x"), "cpu", 1))
    cfg = EvalConfig(level=EvalLevel.smoke, items=2, slices=["arithmetic", "multiple_choice"])
    task = EvalTask(VARIANT, reference_missing="the baseline failed")
    out = run_eval(runner, cfg, suite, task, _inputs(suite, tmp_path / "cache"), tmp_path)
    why = "runtime nologits returns no logits"
    assert out.absent == {
        "quality.multiple_choice": why,
        **{f"fidelity.{m}": why for m in FIDELITY_METRICS},
    }
    assert [r["id"] for r in _items(tmp_path)] == ["arithmetic-0000", "arithmetic-0001"]
    assert out.metrics["quality.arithmetic.score"] == 0.5  # arithmetic-0000's answer is 120
    settings = json.loads((tmp_path / EVAL_DIR / SETTINGS_FILE).read_text())
    assert settings["items"] == {"arithmetic": 2, "multiple_choice": 2}


def test_a_variant_without_a_reference_says_why(suite: Suite, tmp_path: Path) -> None:
    cfg = EvalConfig(level=EvalLevel.smoke, items=1, slices=["json"], window_tokens=16)
    task = EvalTask(VARIANT, reference_missing="the baseline failed")
    out = run_eval(_fake(), cfg, suite, task, _inputs(suite, tmp_path / "cache"), tmp_path)
    assert out.absent == {f"fidelity.{m}": "the baseline failed" for m in FIDELITY_METRICS}
    missing = EvalTask(VARIANT, reference_dir=str(tmp_path / "cache" / "reference" / "gone"))
    out = run_eval(_fake(), cfg, suite, missing, _inputs(suite, tmp_path / "cache"), tmp_path)
    assert out.absent["fidelity.kld_mean"].startswith(
        f"baseline reference {tmp_path}/cache/reference/gone is not in this machine's cache"
    )

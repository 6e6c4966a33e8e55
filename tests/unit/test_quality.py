"""The parent's quality gate: config checks against the suite, and the paired comparison of a
variant's eval files with its baseline's."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.config.errors import UserError
from harness.config.schema import EvalConfig, EvalLevel, GateSpec, SliceGateSpec
from harness.quality.evaluate import EVAL_DIR, ITEMS_FILE, SETTINGS_FILE, select_items, settings
from harness.quality.gate import CARD_JSON, CARD_MD, check_config, compare, dataset_lineage
from harness.quality.scorecard import SCORECARD_VERSION, Verdict
from harness.quality.suites import load_suite
from runners.base import LoadSpec
from runners.fake import FakeConfig, FakeRunner

SLICES = ("arithmetic", "json", "instructions", "long_context", "multiple_choice")


def _cfg(**kw: Any) -> EvalConfig:
    return EvalConfig(level=EvalLevel.full, **kw)


# ----- check_config ---------------------------------------------------------------------------


def _user_error(cfg: EvalConfig) -> str:
    with pytest.raises(UserError) as err:
        check_config(cfg)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_slice_in_gates_names_it_and_suggests_the_closest() -> None:
    message = _user_error(_cfg(gates={"arithmetc": SliceGateSpec(max_drop=0.02)}))
    assert message == (
        "eval.gates names unknown slice 'arithmetc'; valid slices: "
        + ", ".join(SLICES)
        + " (did you mean 'arithmetic'?)"
    )


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("slices", ["jsn"], "eval.slices"),
        ("items_per_slice", {"jsn": 5}, "eval.items_per_slice"),
        ("max_new_tokens", {"jsn": 5}, "eval.max_new_tokens"),
        ("metric", {"jsn": "valid"}, "eval.metric"),
    ],
)
def test_unknown_slice_anywhere_is_named(field: str, value: Any, where: str) -> None:
    message = _user_error(_cfg(**{field: value}))
    assert message.startswith(f"{where} names unknown slice 'jsn'; valid slices: ")
    assert message.endswith("(did you mean 'json'?)")


def test_unknown_metric_names_the_value_and_the_valid_fields() -> None:
    message = _user_error(_cfg(metric={"arithmetic": "exact"}))
    assert message == (
        "eval.metric.arithmetic=exact is not a score of arithmetic; valid: correct, strict, lenient"
    )


def test_a_metric_of_another_slice_is_refused() -> None:
    message = _user_error(_cfg(metric={"json": "acc_norm"}))
    assert message.startswith("eval.metric.json=acc_norm is not a score of json; valid: correct")


@pytest.mark.parametrize(
    ("gate", "gates", "message"),
    [
        (GateSpec(max_drop=1.5), {}, "eval.gate: max_drop=1.5 must be a fraction in [0, 1)"),
        (GateSpec(max_drop=-0.01), {}, "eval.gate: max_drop=-0.01 must be a fraction in [0, 1)"),
        (
            GateSpec(),
            {"json": SliceGateSpec(max_drop=2.0)},
            "eval.gates.json: max_drop=2.0 must be a fraction in [0, 1)",
        ),
        (GateSpec(confidence=1.0), {}, "eval.gate: confidence=1.0 outside (0, 1)"),
        (
            GateSpec(),
            {"json": SliceGateSpec(min_items=1)},
            "eval.gates.json: min_items=1 must be at least 2",
        ),
    ],
)
def test_bad_gate_values_are_one_line_user_errors_naming_the_gate(
    gate: GateSpec, gates: dict[str, SliceGateSpec], message: str
) -> None:
    assert _user_error(_cfg(gate=gate, gates=gates)).startswith(message)


def test_a_valid_config_passes() -> None:
    check_config(
        _cfg(
            slices=["json", "multiple_choice"],
            metric={"json": "field_match", "multiple_choice": "acc_norm"},
            gates={"json": SliceGateSpec(max_drop=0.02)},
        )
    )


def test_level_none_checks_nothing() -> None:
    check_config(EvalConfig(slices=["nope"], metric={"nope": "x"}, gate=GateSpec(max_drop=7.0)))
    assert dataset_lineage(EvalConfig()) == []


def test_dataset_lineage_is_the_manifest_digest_in_the_eval_context() -> None:
    suite = load_suite("core", "smoke")
    (entry,) = dataset_lineage(_cfg())
    assert entry["name"] == f"core@{suite.version}"
    assert entry["digest"] == suite.manifest_sha256[:36]
    assert entry["context"] == "eval"
    assert entry["source_type"] == "local"
    assert json.loads(entry["source"]) == {"uri": (suite.root / "manifest.json").as_uri()}
    assert json.loads(entry["profile"]) == {
        "version": suite.version,
        "level": "full",
        "slices": list(SLICES),
    }


# ----- compare ----------------------------------------------------------------------------------

N = 200


def _settings(cfg: EvalConfig) -> dict[str, Any]:
    suite = load_suite("core", "full")
    runner = FakeRunner(FakeConfig(), LoadSpec(Path("x"), "cpu", 1))
    return settings(runner, cfg, suite, select_items(suite, cfg))


def _rows(
    correct: Mapping[str, Iterable[bool]], errors: Mapping[str, set[int]] | None = None
) -> list[dict[str, Any]]:
    """One items.jsonl row per item: ``correct[slice][i]`` the gated score of item i."""
    rows = []
    for name, scores in correct.items():
        for i, ok in enumerate(scores):
            row: dict[str, Any] = {"id": f"{name}-{i:04d}", "slice": name, "seconds": 0.01}
            if i in (errors or {}).get(name, set()):
                row["error"] = "RuntimeError: prompt over n_ctx"
            else:
                row["score"] = {"correct": ok, "scorer_version": "1.0.0"}
            rows.append(row)
    return rows


def _write(cell_dir: Path, rows: list[dict[str, Any]], cfg_settings: Mapping[str, Any]) -> Path:
    out = cell_dir / EVAL_DIR
    out.mkdir(parents=True)
    (out / ITEMS_FILE).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    (out / SETTINGS_FILE).write_text(json.dumps(cfg_settings, sort_keys=True))
    return out


def _pattern(right: int) -> list[bool]:
    return [i < right for i in range(N)]


BASE_SCORES = {name: _pattern(150 + 10 * k) for k, name in enumerate(SLICES)}


@pytest.fixture
def cfg() -> EvalConfig:
    return _cfg(items=N)


def test_identical_sides_pass_with_zero_delta_and_no_flips(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    assert s["items"] == {name: N for name in SLICES}
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    _write(tmp_path / "cell", _rows(BASE_SCORES), s)
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None
    assert card.verdict is Verdict.PASS and card.reason == "all 5 slices pass"
    assert [r.slice for r in card.slices] == sorted(SLICES)  # settings.json sorts its keys
    assert all(r.verdict is Verdict.PASS for r in card.slices)
    for k, name in enumerate(SLICES):
        p = f"quality.{name}."
        assert gated.metrics[p + "delta"] == 0.0
        assert gated.metrics[p + "flips_lost"] == 0.0
        assert gated.metrics[p + "flips_gained"] == 0.0
        assert gated.metrics[p + "paired_n"] == float(N)
        assert gated.metrics[p + "score_base"] == pytest.approx((150 + 10 * k) / N)
        assert gated.metrics[p + "mcnemar_p"] == 1.0
        assert gated.tags[f"quality.verdict.{name}"] == "PASS"
    assert gated.metrics["quality.aggregate_delta"] == 0.0
    assert gated.tags["quality.verdict"] == "PASS"
    assert gated.tags["quality.scorecard_version"] == SCORECARD_VERSION
    assert gated.flags == []
    written = json.loads((tmp_path / "cell" / EVAL_DIR / CARD_JSON).read_text())
    assert written["verdict"] == "PASS"
    assert [s["slice"] for s in written["slices"]] == sorted(SLICES)
    assert "**Overall: PASS**" in (tmp_path / "cell" / EVAL_DIR / CARD_MD).read_text()


def test_a_planted_drop_fails_that_slice_only(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    variant = dict(BASE_SCORES)
    variant["json"] = [ok and i >= 30 for i, ok in enumerate(BASE_SCORES["json"])]  # 30 lost
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    _write(tmp_path / "cell", _rows(variant), s)
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None
    assert card.verdict is Verdict.FAIL and card.reason == "failed: json"
    assert gated.metrics["quality.json.delta"] == pytest.approx(-30 / N)
    assert gated.metrics["quality.json.flips_lost"] == 30.0
    assert {r.slice: r.verdict for r in card.slices} == {
        name: Verdict.FAIL if name == "json" else Verdict.PASS for name in SLICES
    }


def test_settings_that_differ_make_it_inconclusive_without_a_scorecard(
    cfg: EvalConfig, tmp_path: Path
) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    _write(tmp_path / "cell", _rows(BASE_SCORES), {**s, "suite_sha256": "0" * 64})
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is None
    assert gated.tags == {
        "quality.verdict": "INCONCLUSIVE",
        "quality.reason": "the baseline was evaluated differently (suite_sha256)",
    }
    assert gated.metrics == {}
    assert not (tmp_path / "cell" / EVAL_DIR / CARD_JSON).exists()
    assert not (tmp_path / "cell" / EVAL_DIR / CARD_MD).exists()


def test_every_differing_setting_is_named(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    other = {**s, "max_new_tokens": {"json": 1}, "scorers": {"json": "9.9.9"}}
    _write(tmp_path / "cell", _rows(BASE_SCORES), other)
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is None
    assert gated.tags["quality.reason"] == (
        "the baseline was evaluated differently (scorers, max_new_tokens)"
    )


def test_a_different_chat_template_is_flagged_not_refused(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    _write(tmp_path / "cell", _rows(BASE_SCORES), {**s, "chat_template": "raw prompt"})
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None and card.verdict is Verdict.PASS
    assert gated.flags == ["quality: the baseline used a different chat template"]


def test_a_slice_the_variant_could_not_run_says_why(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    variant = {k: v for k, v in BASE_SCORES.items() if k != "multiple_choice"}
    _write(tmp_path / "cell", _rows(variant), s)
    absent = {"quality.multiple_choice": "runtime X returns no logits"}
    gated, card = compare(cfg, base, tmp_path / "cell", absent)
    assert card is not None
    mc = card.slices[-1]
    assert (mc.slice, mc.n, mc.unpaired) == ("multiple_choice", 0, N)
    assert mc.verdict is Verdict.INCONCLUSIVE
    assert mc.reason == "not scored: runtime X returns no logits"
    assert card.verdict is Verdict.INCONCLUSIVE
    assert card.reason == "inconclusive: multiple_choice"
    assert gated.tags["quality.verdict.multiple_choice"] == "INCONCLUSIVE"
    assert gated.metrics["quality.multiple_choice.paired_n"] == 0.0
    assert "quality.multiple_choice.delta" not in gated.metrics
    assert all(r.verdict is Verdict.PASS for r in card.slices[:-1])


def test_a_slice_without_items_and_no_reason_says_so(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    variant = {k: v for k, v in BASE_SCORES.items() if k != "json"}
    _write(tmp_path / "cell", _rows(variant), s)
    _, card = compare(cfg, base, tmp_path / "cell", {"quality.multiple_choice": "unused"})
    assert card is not None
    assert {r.slice: r.reason for r in card.slices}["json"] == "no paired items"


def test_items_with_errors_are_unpaired(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES, {"arithmetic": {0}}), s)
    _write(tmp_path / "cell", _rows(BASE_SCORES, {"arithmetic": {1, 2, 3, 4}}), s)
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None
    arithmetic = card.slices[0]
    assert (arithmetic.n, arithmetic.unpaired) == (N - 5, 5)
    assert gated.metrics["quality.arithmetic.paired_n"] == float(N - 5)
    assert gated.metrics["quality.arithmetic.delta"] == 0.0
    assert card.verdict is Verdict.PASS


def test_the_gated_metric_comes_from_the_settings(tmp_path: Path) -> None:
    cfg = _cfg(items=N, metric={"json": "field_match"})
    s = _settings(cfg)
    assert s["metric"]["json"] == "field_match"
    base_rows = _rows(BASE_SCORES)
    cell_rows = _rows(BASE_SCORES)
    for b, c in zip(base_rows, cell_rows, strict=True):
        if b["slice"] == "json":
            b["score"]["field_match"] = 1.0
            c["score"]["field_match"] = 0.5  # every item lost half its fields
    base = _write(tmp_path / "base", base_rows, s)
    _write(tmp_path / "cell", cell_rows, s)
    gated, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None
    assert gated.metrics["quality.json.delta"] == pytest.approx(-0.5)
    assert gated.tags["quality.verdict.json"] == "FAIL"


def test_missing_items_files_are_inconclusive(cfg: EvalConfig, tmp_path: Path) -> None:
    s = _settings(cfg)
    base = _write(tmp_path / "base", _rows(BASE_SCORES), s)
    (tmp_path / "cell").mkdir()
    gated, card = compare(cfg, base, tmp_path / "cell", {"quality": "eval failed: boom"})
    assert card is None and gated.tags["quality.reason"] == "eval failed: boom"
    _write(tmp_path / "cell2", _rows(BASE_SCORES), s)
    gated, card = compare(cfg, tmp_path / "nowhere", tmp_path / "cell2", {})
    assert card is None
    assert gated.tags["quality.reason"] == "the baseline run has no eval items"


def test_gates_of_slices_not_run_are_ignored(tmp_path: Path) -> None:
    # eval=full sets gates for arithmetic and json; a run limited by eval.slices must still be
    # gated (found in a real full-level run: the scorecard refused the unknown gates)
    cfg = _cfg(items=N)
    cfg.slices = ["long_context", "multiple_choice"]
    cfg.gates = {"arithmetic": SliceGateSpec(max_drop=0.02), "long_context": SliceGateSpec(0.1)}
    s = _settings(cfg)
    subset = {k: v for k, v in BASE_SCORES.items() if k in cfg.slices}
    base = _write(tmp_path / "base", _rows(subset), s)
    _write(tmp_path / "cell", _rows(subset), s)
    _, card = compare(cfg, base, tmp_path / "cell", {})
    assert card is not None and card.verdict is Verdict.PASS
    assert {r.slice: r.max_drop for r in card.slices} == {
        "long_context": 0.1,
        "multiple_choice": 0.05,
    }

"""The parent's side of the quality gate: check the eval config against its suite, pair a
variant's per-item results with its baseline's, and turn the scorecard into files, metrics and
tags. Pure apart from reading and writing the cell's eval/ files; no runtime, no MLflow."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.config.errors import UserError
from harness.config.schema import EvalConfig
from harness.quality.evaluate import EVAL_DIR, ITEMS_FILE, SETTINGS_FILE
from harness.quality.scorecard import (
    GateConfig,
    Scorecard,
    SliceGate,
    Verdict,
    format_scorecard,
    scorecard,
)
from harness.quality.scorers import SCORE_FIELDS
from harness.quality.suites import load_suite

CARD_JSON, CARD_MD = "scorecard.json", "scorecard.md"
# Settings that must be equal for a pairing to mean anything (the chat template may differ
# across runtimes on purpose; that is flagged, not refused).
MUST_MATCH = ("suite_sha256", "scorers", "metric", "items", "max_new_tokens")


def _unknown(where: str, name: str, valid: Sequence[str]) -> UserError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(
        f"{where} names unknown slice '{name}'; valid slices: {', '.join(valid)}{hint}"
    )


def check_config(cfg: EvalConfig) -> None:
    """UserError for a suite that fails its manifest, an unknown slice anywhere, a metric its
    slice's scorer does not produce, or an invalid threshold."""
    if not cfg.enabled:
        return
    slices = list(load_suite(cfg.suite, "smoke").slices)
    tables: dict[str, Sequence[str]] = {
        "eval.slices": cfg.slices,
        "eval.items_per_slice": list(cfg.items_per_slice),
        "eval.max_new_tokens": list(cfg.max_new_tokens),
        "eval.metric": list(cfg.metric),
        "eval.gates": list(cfg.gates),
    }
    for where, names in tables.items():
        for name in names:
            if name not in slices:
                raise _unknown(where, name, slices)
    for name, metric in cfg.metric.items():
        if metric not in SCORE_FIELDS[name]:
            valid = ", ".join(SCORE_FIELDS[name])
            raise UserError(f"eval.metric.{name}={metric} is not a score of {name}; valid: {valid}")
    specs = {"eval.gate": cfg.gate}
    specs.update({f"eval.gates.{name}": spec.over(cfg.gate) for name, spec in cfg.gates.items()})
    for where, spec in specs.items():
        try:
            SliceGate(spec.max_drop, spec.confidence, spec.min_items)
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None


def gates(cfg: EvalConfig, slices: Sequence[str] | None = None) -> GateConfig:
    """The thresholds; with ``slices``, only those slices' own gates (``eval.slices`` may run a
    subset while the level's file sets gates for every slice)."""

    def gate(spec: Any) -> SliceGate:
        return SliceGate(spec.max_drop, spec.confidence, spec.min_items)

    per_slice = {
        name: gate(spec.over(cfg.gate))
        for name, spec in cfg.gates.items()
        if slices is None or name in slices
    }
    return GateConfig(default=gate(cfg.gate), slices=per_slice)


def read_items(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def item_scores(
    rows: Sequence[Mapping[str, Any]], metric: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """slice -> item id -> the gated score; items that errored are left out (unpaired)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if "score" in r:
            value = r["score"][metric.get(r["slice"], "correct")]
            out.setdefault(r["slice"], {})[r["id"]] = float(value)
    return out


@dataclass
class Gated:
    """What the parent adds to a variant cell's record."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def inconclusive(reason: str) -> Gated:
    return Gated(tags={"quality.verdict": Verdict.INCONCLUSIVE.value, "quality.reason": reason})


def _mismatch(base: Mapping[str, Any], variant: Mapping[str, Any]) -> list[str]:
    return [k for k in MUST_MATCH if base.get(k) != variant.get(k)]


def compare(
    cfg: EvalConfig,
    base_dir: Path,
    cell_dir: Path,
    absent: Mapping[str, str],
) -> tuple[Gated, Scorecard | None]:
    """Score ``cell_dir``'s eval against the baseline's files in ``base_dir``; writes the
    scorecard into ``cell_dir/eval``."""
    ours = cell_dir / EVAL_DIR
    if not (ours / ITEMS_FILE).is_file():
        return inconclusive(absent.get("quality", "this cell produced no eval items")), None
    if not (base_dir / ITEMS_FILE).is_file():
        return inconclusive("the baseline run has no eval items"), None
    base_settings = json.loads((base_dir / SETTINGS_FILE).read_text())
    our_settings = json.loads((ours / SETTINGS_FILE).read_text())
    differ = _mismatch(base_settings, our_settings)
    if differ:
        return inconclusive(f"the baseline was evaluated differently ({', '.join(differ)})"), None
    slices = list(our_settings["items"])
    metric = our_settings["metric"]
    card = scorecard(
        item_scores(read_items(base_dir / ITEMS_FILE), metric),
        item_scores(read_items(ours / ITEMS_FILE), metric),
        gates(cfg, slices),
        slices=slices,
        seed=cfg.seed,
    )
    card = _explain_absent(card, absent)
    (ours / CARD_JSON).write_text(json.dumps(asdict(card), indent=2, sort_keys=True) + "\n")
    (ours / CARD_MD).write_text(format_scorecard(card) + "\n")
    gated = Gated(metrics=card_metrics(card), tags=card_tags(card))
    if base_settings.get("chat_template") != our_settings.get("chat_template"):
        gated.flags.append("quality: the baseline used a different chat template")
    return gated, card


def _explain_absent(card: Scorecard, absent: Mapping[str, str]) -> Scorecard:
    """A slice this runtime could not run says why, rather than 'no paired items'; a slice the
    baseline scores 0 on says that it cannot show a regression (a floor, not a pass)."""

    def why(r: Any) -> Any:
        if r.n == 0 and f"quality.{r.slice}" in absent:
            return replace(r, reason=f"not scored: {absent[f'quality.{r.slice}']}")
        if r.n and r.score_base == 0.0:
            return replace(r, reason=f"{r.reason}; the baseline scores 0: no regression to see")
        return r

    return replace(card, slices=tuple(why(r) for r in card.slices))


def card_metrics(card: Scorecard) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in card.slices:
        p = f"quality.{r.slice}."
        values: dict[str, float | None] = {
            "paired_n": float(r.n),
            "score_base": r.score_base,
            "delta": r.delta,
            "delta_se": r.delta_se,
            "delta_ci_low": r.delta_ci[0] if r.delta_ci else None,
            "delta_ci_high": r.delta_ci[1] if r.delta_ci else None,
            "flips_lost": float(r.flips_lost),
            "flips_gained": float(r.flips_gained),
            "mcnemar_p": r.mcnemar_p,
            "mcnemar_p_holm": r.mcnemar_p_holm,
        }
        out.update({p + k: v for k, v in values.items() if v is not None})
    if card.aggregate_delta is not None:
        out["quality.aggregate_delta"] = card.aggregate_delta
    return out


def card_tags(card: Scorecard) -> dict[str, str]:
    tags = {
        "quality.verdict": card.verdict.value,
        "quality.reason": card.reason,
        "quality.scorecard_version": card.version,
    }
    for r in card.slices:
        tags[f"quality.verdict.{r.slice}"] = r.verdict.value
    return tags


def dataset_lineage(cfg: EvalConfig) -> list[dict[str, str]]:
    """The suite as an MLflow dataset input: name, manifest hash as digest, version, source."""
    if not cfg.enabled:
        return []
    suite = load_suite(cfg.suite, "smoke")
    profile = {"version": suite.version, "level": cfg.level.value, "slices": list(suite.slices)}
    return [
        {
            "name": f"{suite.name}@{suite.version}",
            "digest": suite.manifest_sha256[:36],
            "source_type": "local",
            "source": json.dumps({"uri": (suite.root / "manifest.json").as_uri()}),
            "profile": json.dumps(profile),
            "context": "eval",
        }
    ]

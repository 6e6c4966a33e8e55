"""Baseline resolution before launch: which cell each eval cell is paired with, and the
planning error when that cell can neither run in the sweep nor be found finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from harness.config.errors import UserError
from harness.config.register import register_configs
from harness.config.schema import EvalConfig, EvalLevel, HarnessConfig
from harness.plan.cell import Cell
from harness.sweep.baselines import attach, baseline_overrides

WHERE = "sqlite:///tmp/mlflow.db"
CONF = str(Path(__file__).resolve().parents[2] / "conf")


def _config(level: EvalLevel = EvalLevel.smoke) -> HarnessConfig:
    return HarnessConfig(eval=EvalConfig(level=level, baseline={"precision": "f16"}))


def _key(overrides: Sequence[str]) -> str:
    """What the planner's cell key stands for here: the composed config, whatever the order."""
    return "key:" + "|".join(sorted(overrides))


def _cell(*overrides: str, skip: str | None = None, level: EvalLevel = EvalLevel.smoke) -> Cell:
    return Cell(
        index=0,
        cell_id="m/gguf/" + "/".join(overrides),
        choices={},
        overrides=tuple(overrides),
        config=_config(level),
        key=_key(overrides),
        skip=skip,
    )


class Composer:
    """Composes a cell from overrides like the launcher does; a skip the planner would decide
    for a given precision comes with it. Records every call."""

    def __init__(self, skips: dict[str, str] | None = None) -> None:
        self.skips = skips or {}
        self.calls: list[list[str]] = []

    def __call__(self, overrides: list[str]) -> Cell:
        self.calls.append(list(overrides))
        precision = next(o.split("=", 1)[1] for o in overrides if o.startswith("precision="))
        return _cell(*overrides, skip=self.skips.get(precision))


class Finished:
    def __init__(self, keys: Sequence[str] = ()) -> None:
        self.keys = set(keys)
        self.asked: list[list[str]] = []

    def __call__(self, keys: list[str]) -> list[str]:
        self.asked.append(list(keys))
        return [k for k in keys if k in self.keys]


def test_baseline_overrides_replace_the_selected_key_and_keep_the_rest() -> None:
    got = baseline_overrides(
        ["model=m", "precision=q4_k_m", "runtime.n_threads=2"], {"precision": "f16"}
    )
    assert got == ["model=m", "runtime.n_threads=2", "precision=f16"]


def test_baseline_overrides_add_a_key_the_cell_did_not_set() -> None:
    assert baseline_overrides(["model=m"], {"precision": "f16"}) == ["model=m", "precision=f16"]


def test_baseline_overrides_keep_the_append_prefix_of_the_key_they_replace() -> None:
    """A '+key=' override adds a key Hydra's config lacks: 'key=v' would not compose."""
    got = baseline_overrides(
        ["model=m", "+runtime.engine_args.kv=fp8", "++runtime.x=1"],
        {"runtime.engine_args.kv": "auto", "runtime.x": "2", "precision": "f16"},
    )
    assert got == ["model=m", "+runtime.engine_args.kv=auto", "++runtime.x=2", "precision=f16"]


def test_baseline_overrides_of_an_appended_key_compose_with_hydra() -> None:
    register_configs()
    cell = ["precision=q8_0", "+eval.metric.json=valid"]  # eval.metric has no json key by default
    wanted = baseline_overrides(cell, {"eval.metric.json": "correct", "precision": "f16"})
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose("config", overrides=wanted)
        assert (cfg.eval.metric.json, cfg.precision.name) == ("correct", "f16")
        with pytest.raises(ConfigCompositionException, match="To append to your config use"):
            compose("config", overrides=["eval.metric.json=correct"])


def test_baseline_overrides_with_several_selector_keys() -> None:
    got = baseline_overrides(
        ["precision=q4_k_m", "runtime.logit_noise=0.5", "workload=tiny"],
        {"precision": "f16", "runtime.logit_noise": "0.0"},
    )
    assert got == ["workload=tiny", "precision=f16", "runtime.logit_noise=0.0"]


def test_a_baseline_is_its_own_baseline_and_a_variant_gets_its_baselines_key() -> None:
    base = _cell("model=m", "precision=f16")
    variant = _cell("model=m", "precision=q4_k_m")
    composer, finished = Composer(), Finished()
    out = attach([base, variant], composer, finished, WHERE)
    assert [c.baseline_key for c in out] == [base.key, base.key]
    assert [c.key for c in out] == [base.key, variant.key]
    assert finished.asked == []  # nothing missing: the store is not asked
    # both cells compose the same baseline overrides: composed once
    assert composer.calls == [["model=m", "precision=f16"]]


def test_a_baseline_missing_from_the_sweep_but_finished_is_accepted() -> None:
    variant = _cell("model=m", "precision=q4_k_m")
    wanted = _key(["model=m", "precision=f16"])
    finished = Finished([wanted])
    (out,) = attach([variant], Composer(), finished, WHERE)
    assert out.baseline_key == wanted
    assert finished.asked == [[wanted]]


def test_a_baseline_missing_everywhere_is_a_user_error_naming_selector_and_cell() -> None:
    variant = _cell("model=m", "precision=q4_k_m")
    with pytest.raises(UserError) as err:
        attach([variant], Composer(), Finished(), WHERE)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"eval.baseline (precision=f16) of cell {variant.cell_id}: ")
    assert "m/gguf/model=m/precision=f16 is not runnable in this sweep" in message
    assert f"has no finished run in {WHERE}" in message
    assert message.endswith("add precision=f16 to the sweep or run it first")
    assert "skipped" not in message


def test_a_skipped_baseline_is_not_runnable() -> None:
    why = "f16 does not fit in 8 GiB"
    base = _cell("model=m", "precision=f16", skip=why)
    variant = _cell("model=m", "precision=q4_k_m")
    with pytest.raises(UserError) as err:
        attach([base, variant], Composer({"f16": why}), Finished(), WHERE)
    message = str(err.value)
    assert f"of cell {variant.cell_id}: " in message
    assert f"not runnable in this sweep (it cannot run: {why})" in message


def test_a_skipped_baseline_finished_earlier_is_accepted() -> None:
    why = "f16 does not fit in 8 GiB"
    base = _cell("model=m", "precision=f16", skip=why)
    variant = _cell("model=m", "precision=q4_k_m")
    out = attach([base, variant], Composer({"f16": why}), Finished([base.key]), WHERE)
    assert [c.baseline_key for c in out] == [None, base.key]  # the skipped cell runs nothing


def test_eval_disabled_leaves_no_baseline_and_composes_nothing() -> None:
    cells = [
        _cell("precision=q4_k_m", level=EvalLevel.none),
        _cell("precision=f16", level=EvalLevel.none),
    ]
    composer, finished = Composer(), Finished()
    out = attach(cells, composer, finished, WHERE)
    assert [c.baseline_key for c in out] == [None, None]
    assert out == cells
    assert composer.calls == [] and finished.asked == []

"""The quality gate on the real model: the eval=smoke sweep through the CLI and MLflow, and the
gate's two promises checked on real llama.cpp outputs (A/A passes, a planted regression is
caught on its slice only)."""

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.artifacts.cache import ArtifactCache
from harness.artifacts.gguf_file import read_table
from harness.artifacts.quantize import materialize, plan
from harness.config.schema import EvalConfig, EvalLevel, GateSpec
from harness.metrics import names
from harness.quality.evaluate import BASELINE, VARIANT, EvalTask, FidelityInputs, run_eval
from harness.quality.gate import compare
from harness.quality.suites import load_suite
from runners import Completion, LoadSpec
from runners.llama_cpp import LlamaCppConfig, LlamaCppRunner
from tests.conftest import mlflow_runs
from tests.e2e.conftest import SweepRun
from tests.integration.test_fake_sweep import children

pytestmark = pytest.mark.slow
SLICES = ("arithmetic", "json", "instructions", "long_context", "multiple_choice")


def test_smoke_eval_sweep_on_the_real_model(smoke_sweep: SweepRun) -> None:
    r, tmp_path = smoke_sweep.result, smoke_sweep.cwd
    assert r.returncode == 0, r.stderr + r.stdout
    cells = {c.data.tags["harness.choice.precision"]: c for c in children(mlflow_runs(tmp_path))}
    base = cells["f16"]
    assert base.data.tags["quality.role"] == "baseline"
    assert base.data.metrics["quality.long_context.score"] >= 0.5  # the needle is found
    for precision in ("q8_0", "q2_k"):
        m, tags = cells[precision].data.metrics, cells[precision].data.tags
        assert tags["quality.baseline_run_id"] == base.info.run_id
        for name in SLICES:
            assert tags[f"quality.verdict.{name}"] in ("PASS", "FAIL", "INCONCLUSIVE")
            assert m[f"quality.{name}.paired_n"] == (20 if name == "multiple_choice" else 4)
        assert m["fidelity.n_tokens"] == 2 * 255  # two 512-token windows, second halves
        assert m["fidelity.ppl_base"] == pytest.approx(base.data.metrics["quality.corpus_ppl"])
    q8, q2 = cells["q8_0"].data.metrics, cells["q2_k"].data.metrics
    # measured ~0.003 and ~0.37 on this corpus: the ordering is the claim, not the values
    assert 0 < q8["fidelity.kld_mean"] < 0.05 < q2["fidelity.kld_mean"]
    assert q8["fidelity.top1_agreement"] > q2["fidelity.top1_agreement"]
    assert q8["fidelity.ppl_ratio"] < q2["fidelity.ppl_ratio"]
    assert "| baseline |" in r.stdout


def test_every_name_the_real_sweep_recorded_is_in_the_table(smoke_sweep: SweepRun) -> None:
    """Real llama.cpp cells with the quality eval record the most names: each metric resolves
    to its entry in harness/metrics/names.py and each tag to a tag family there."""
    for run in mlflow_runs(smoke_sweep.cwd):
        metrics, tags = run.data.metrics, run.data.tags
        assert [k for k in metrics if names.resolve(k) is None] == [], run.info.run_name
        assert [k for k in tags if not k.startswith("mlflow.") and not names.is_tag(k)] == []


class Corrupting:
    """Delegates to a real runner; changes the needle answer of a known set of long_context
    items (a planted regression the gate must catch on that slice and no other)."""

    def __init__(self, inner: LlamaCppRunner, broken: set[str], prompts: dict[str, str]) -> None:
        self.inner = inner
        self.broken = {prompts[i] for i in broken}
        self.name = inner.name
        self.capabilities = inner.capabilities

    def __getattr__(self, attr: str) -> object:
        return getattr(self.inner, attr)

    def complete(self, prompt: str, max_new_tokens: int, chat: bool) -> Completion:
        done = self.inner.complete(prompt, max_new_tokens, chat)
        if prompt in self.broken:
            return replace(done, text="".join(c if not c.isdigit() else "0" for c in done.text))
        return done


@pytest.fixture(scope="module")
def f16_runner(smollm2: Path, model_cache: Path) -> Iterator[LlamaCppRunner]:
    steps = plan("gguf", "f16", "smollm2-test", read_table(smollm2))
    path = Path(materialize(steps, smollm2, ArtifactCache(model_cache), threads=2).path)
    runner = LlamaCppRunner(LlamaCppConfig(), LoadSpec(path, "cpu", 2))
    runner.load()
    yield runner
    runner.close()


def _eval(runner: object, cell: Path, role: str, cache: Path, ref: str | None = None) -> Path:
    cfg = EvalConfig(
        level=EvalLevel.smoke,
        slices=["long_context", "multiple_choice"],
        items=10,
        items_per_slice={"multiple_choice": 80},
        max_new_tokens={"long_context": 48},
        corpus_windows=1,
        gate=GateSpec(max_drop=0.05, min_items=10),
    )
    suite = load_suite("core", "full")
    inputs = FidelityInputs(suite.corpus_text(), "corpus", "artifact", {"r": "1"}, cache)
    task = EvalTask(role, reference_dir=ref)
    out = run_eval(runner, cfg, suite, task, inputs, cell)  # type: ignore[arg-type]
    return Path(cache / "reference" / out.tags["quality.reference_key"])


def test_aa_passes_and_a_planted_regression_fails_only_its_slice(
    f16_runner: LlamaCppRunner, tmp_path: Path
) -> None:
    cfg = EvalConfig(level=EvalLevel.smoke, gate=GateSpec(max_drop=0.05, min_items=10))
    ref = _eval(f16_runner, tmp_path / "base", BASELINE, tmp_path / "cache")
    _eval(f16_runner, tmp_path / "again", VARIANT, tmp_path / "cache", str(ref))
    gated, card = compare(cfg, tmp_path / "base" / "eval", tmp_path / "again", {})
    assert card is not None
    verdicts = {r.slice: r.verdict.value for r in card.slices}
    # the same model twice: every item identical, no flip, no false alarm; 80 identical
    # multiple-choice items pass a 5-point gate, 10 identical generations cannot (exact bound)
    assert verdicts == {"long_context": "INCONCLUSIVE", "multiple_choice": "PASS"}
    assert all(r.flips_lost == r.flips_gained == 0 for r in card.slices)
    assert gated.metrics["quality.long_context.delta"] == 0.0
    same = [(tmp_path / d / "eval" / "items.jsonl").read_text() for d in ("base", "again")]
    strip = [
        [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in s.splitlines()]
        for s in same
    ]
    assert strip[0] == strip[1]  # greedy decoding is deterministic run to run

    items = load_suite("core", "full").items_by_slice["long_context"][:10]
    base_rows = [json.loads(x) for x in same[0].splitlines() if "long_context" in x]
    right = [r["id"] for r in base_rows if r["score"]["correct"]]
    assert len(right) >= 8, "the f16 model finds most needles"
    broken = set(random.Random(0).sample(right, 6))
    wrapped = Corrupting(f16_runner, broken, {i.id: i.prompt for i in items})
    _eval(wrapped, tmp_path / "bad", VARIANT, tmp_path / "cache", str(ref))
    gated, card = compare(cfg, tmp_path / "base" / "eval", tmp_path / "bad", {})
    assert card is not None
    by_slice = {r.slice: r for r in card.slices}
    assert by_slice["long_context"].verdict.value == "FAIL"
    assert by_slice["long_context"].flips_lost == 6 and by_slice["long_context"].flips_gained == 0
    assert by_slice["multiple_choice"].verdict.value == "PASS"
    assert gated.tags["quality.verdict"] == "FAIL"
    assert gated.tags["quality.reason"] == "failed: long_context"

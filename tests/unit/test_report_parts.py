"""Report pieces that need no store: p95 CIs from raw samples, the sweep diff, the CLI's
arguments and the Markdown/HTML renderers on a hand-made table."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config.errors import UserError
from harness.tracking.store import RunData, SweepData
from reports import html, markdown
from reports.cli import parse
from reports.decide import recommend
from reports.diff import diff, diff_markdown
from reports.latency import p95_with_ci
from reports.table import build
from tests.unit.test_decide import LAPTOP, sweep


def test_p95_is_the_pooled_type7_percentile_and_its_ci_brackets_it() -> None:
    rng = np.random.default_rng(1)
    groups = [list(rng.gamma(2.0, 0.004, size=64)) for _ in range(24)]
    stats = p95_with_ci(groups)
    pooled = [x for g in groups for x in g]
    assert stats.p95 == pytest.approx(float(np.percentile(pooled, 95)))
    assert stats.ci95 is not None
    lo, hi = stats.ci95
    assert lo < stats.p95 < hi
    assert p95_with_ci(groups) == stats  # seeded: the same interval every time


def test_p95_absent_below_59_samples_and_no_ci_from_one_request() -> None:
    assert p95_with_ci([[0.1] * 10, [0.2] * 10]).p95 is None  # 20 samples
    one = p95_with_ci([list(np.linspace(0.01, 0.02, 100))])
    assert one.p95 is not None and one.ci95 is None


def _rep(table: dict[tuple[str, str], list[float]]):  # type: ignore[no-untyped-def]
    return lambda run_id, metric: table.get((run_id, metric), [])


def test_diff_lists_regressions_beyond_noise_only() -> None:
    before = sweep()
    after = [RunData(r.run_id + "-new", r.name, r.status, r.tags, {}, r.metrics) for r in before]
    reps = {}
    for r in before:
        reps[(r.run_id, "output_throughput_tok_s")] = [100.0, 101.0, 99.0]
        reps[(r.run_id + "-new", "output_throughput_tok_s")] = [100.5, 99.5, 100.0]
    reps[("run-q2_k-new", "output_throughput_tok_s")] = [80.0, 81.0, 79.5]  # 20 % slower
    reps[("run-q8_0-new", "output_throughput_tok_s")] = [120.0, 121.0, 119.0]
    d = diff(before, after, _rep(reps), ("last week", "today"))
    assert [(c, x.metric) for c, x in d.regressions] == [("m/gguf/q2_k", "output_throughput_tok_s")]
    assert [c for c, _ in d.improvements] == ["m/gguf/q8_0"]
    assert len(d.rows) == 4  # the other metrics have no repetitions here: not compared
    text = diff_markdown(d)
    assert "1 regression(s) and 1 improvement(s)" in text
    assert "| m/gguf/q2_k | output_throughput_tok_s | 100 | 80.17 | 0.802×" in text


def test_cli_arguments_parse_groups_and_fields() -> None:
    args = parse(["sweep=135m_gguf", "decision=laptop", "decision.max_slice_loss=0.05"])
    assert args.sweep == "135m_gguf" and args.decision.name == "laptop"
    assert args.decision.max_slice_loss == 0.05
    assert args.decision.memory_budget_gib == pytest.approx(0.1397)
    assert args.tracking.uri == "sqlite:///mlflow.db"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep"], "argument 'sweep' is not key=value"),
        ([], "sweep= is required"),
        (["sweep="], "sweep= is required"),
        (["decision=laptop"], "sweep= is required"),
        (["sweeps=x"], "option=sweeps is not a valid choice; choose one of:"),
        (["sweep=x", "decision=laptp"], "decision=laptp is not a valid choice; choose one of: "),
        (["sweep=x", "decision.max_slice_loss=2"], "is a fraction (0.02 = 2 points)"),
        (["sweep=x", "decision.memory_of=vram"], "memory_of"),
        (["sweep=x", "decision.max_kld=abc"], "max_kld"),
    ],
)
def test_cli_bad_input_is_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UserError) as e:
        parse(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_markdown_and_html_show_the_same_numbers() -> None:
    runs = sweep()
    table = build(runs, {}, LAPTOP)
    rec = recommend(table, LAPTOP)
    md = markdown.render("Report", rec, table, "/tmp/report.html", None)
    assert "- **Memory-bound** (the best quality that fits the memory budget): **q8_0**." in md
    assert "| q8_0 | ok | 142.0 (137.7–146.3) |" in md
    parent = RunData("p", "sweep", "FINISHED", {}, {}, {})
    page = html.render("Report", SweepData(parent, "id", "s", ""), "sqlite", rec, table, [], runs)
    assert '<tr class="" data-cell="q8_0">' in page
    assert '<td data-col="tok_s">142.0<span class="ci">137.7–146.3</span></td>' in page
    assert 'class="absent" title="not measured in this cell">—' in page
    assert "<script" not in page

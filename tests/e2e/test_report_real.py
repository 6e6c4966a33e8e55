"""The report of a real sweep: built at the sweep's end and by `python -m reports` from the
SQLite store it wrote, checked against MLflow, and opened in headless Chromium."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import chromium_available, open_report
from tests.conftest import mlflow_runs
from tests.e2e.conftest import SweepRun
from tests.integration.test_fake_sweep import children

pytestmark = pytest.mark.slow
MIB = 2**20


def reports_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reports", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def report(smoke_sweep: SweepRun) -> tuple[SweepRun, Path, str]:
    assert smoke_sweep.result.returncode == 0, smoke_sweep.result.stderr
    r = reports_cli(smoke_sweep.cwd, "sweep=135m_gguf", "decision=laptop", "out=rep")
    assert r.returncode == 0, r.stderr
    (html,) = (smoke_sweep.cwd / "rep").glob("135m_gguf-*/report.html")
    return smoke_sweep, html, r.stdout


def test_the_sweep_prints_its_recommendation_and_attaches_the_report(
    smoke_sweep: SweepRun,
) -> None:
    out = smoke_sweep.result.stdout
    assert "## Recommendation: decision `laptop`" in out
    assert "- **Memory-bound** (the best quality that fits the memory budget): **" in out
    path = Path(re.search(r"^report: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert path.is_file() and path.name == "report.html"
    runs = mlflow_runs(smoke_sweep.cwd)
    (parent,) = children(runs, "sweep")
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_sweep.cwd / 'mlflow.db'}")
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert files == {"report/report.html", "report/summary.md", "report/cells.csv"}
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["report.decision"] == "laptop"
    # f16 is 258 MiB of weights, over the 150 MB budget: never the memory-bound choice
    assert tags["report.memory_bound"] in ("q8_0", "q2_k", "none")


def test_report_rows_and_numbers_equal_mlflow(report: tuple[SweepRun, Path, str]) -> None:
    sweep, html, stdout = report
    cells = {c.data.tags["harness.choice.precision"]: c for c in children(mlflow_runs(sweep.cwd))}
    with (html.parent / "cells.csv").open() as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(cells) == {"f16", "q8_0", "q2_k"}  # one row per cell
    page = html.read_text()
    for name, run in cells.items():
        m, row = run.data.metrics, rows[name]
        assert row["run_id"] == run.info.run_id
        assert float(row["tok_s"]) == m["output_throughput_tok_s"]  # the CSV is unrounded
        assert float(row["weights_bytes"]) == m["model_file_bytes"]
        tr = re.search(rf'<tr class="[^"]*" data-cell="{name}">(.*?)</tr>', page).group(1)  # type: ignore[union-attr]
        shown = dict(re.findall(r'data-col="([^"]+)">([^<]+)', tr))
        assert shown["tok_s"] == f"{m['output_throughput_tok_s']:.1f}"
        assert shown["weights_bytes"] == f"{m['model_file_bytes'] / MIB:.1f}"
        assert shown["bpw"] == f"{m['model_bpw']:.2f}"
        assert shown["prediction_ratio"] == f"{m['memory.prediction_ratio']:.3f}"
        if name != "f16":
            assert shown["kld"] == f"{m['fidelity.kld_mean']:.4f}"
            delta = m["quality.arithmetic.delta"] * 100
            assert shown["delta:arithmetic"] == f"{delta:+.1f}".replace("-", "−")
    assert "## Recommendation: decision `laptop`" in stdout
    assert "f16 (memory: weights 258.3 MiB over the 143.1 MiB budget)" in stdout


def test_report_opens_in_a_real_browser(report: tuple[SweepRun, Path, str], tmp_path: Path) -> None:
    reason = chromium_available()
    if reason:
        pytest.skip(reason)
    _, html, _ = report
    check = open_report(html, tmp_path / "report.png")
    assert check.console_errors == [] and check.page_errors == [] and check.failed_requests == []
    assert check.broken_images == []
    # five plots; with eval and events every one of them is drawn
    assert len(check.images) == 5 and all(i.src.startswith("data:image/png") for i in check.images)
    assert "Recommendation: decision laptop" in check.text
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_a_sweep_compared_with_itself_has_no_regression(
    report: tuple[SweepRun, Path, str],
) -> None:
    sweep, _, _ = report
    r = reports_cli(sweep.cwd, "sweep=135m_gguf", "against=135m_gguf", "attach=false", "out=cmp")
    assert r.returncode == 0, r.stderr
    assert "0 regression(s) and 0 improvement(s) beyond noise" in r.stdout
    # no decision given: the one the sweep's own report used
    assert "reports: decision laptop, as recorded with the sweep" in r.stderr
    assert "## Recommendation: decision `laptop`" in r.stdout


def test_unknown_sweep_is_one_line(report: tuple[SweepRun, Path, str]) -> None:
    sweep, _, _ = report
    r = reports_cli(sweep.cwd, "sweep=135m_ggu")
    assert r.returncode == 2
    assert r.stderr.startswith("reports: error: sweep=135m_ggu is not in sqlite:///")
    assert "choose a sweep name or id: 135m_gguf (" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

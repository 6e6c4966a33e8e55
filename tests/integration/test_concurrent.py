"""Two sweeps started at once on one fresh SQLite store: the schema is set up once, one parent
run is opened, and every cell runs once (the second sweep waits on the cell and finds it done)."""

import subprocess
from collections import Counter
from pathlib import Path

from tests.conftest import harness_argv, mlflow_runs
from tests.integration.test_fake_sweep import children


def test_concurrent_sweeps_on_one_store_run_each_cell_once(tiny_gguf: Path, tmp_path: Path) -> None:
    argv = harness_argv(
        tmp_path / "cache",
        "+sweep=fake_matrix",
        f"model.source.path={tiny_gguf}",
        "runtime.load_s=0.5",
    )
    procs = [
        subprocess.Popen(
            argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    runs = mlflow_runs(tmp_path)
    finished = [c for c in children(runs) if c.info.status == "FINISHED"]
    keys = Counter(c.data.tags["harness.cell_key"] for c in finished)
    assert len(keys) == 4 and set(keys.values()) == {1}, keys
    (parent,) = children(runs, "sweep")
    assert parent.info.status == "FINISHED"
    # the sweep that waited says where its cells came from
    assert any("concurrent sweep" in out + err for out, err in outs)

"""The bad-input suite: every config group, keys and values, sweep files, the reports CLI and
the environment (paths, stores, servers). Each case asserts the exit code, one line naming the
value (and the choices where there are some), no traceback, and nothing half-written: no
RUNNING run in the store, no temporary artifact left in the cache."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_CONF, fake_cell
from tests.synthetic_server import ServerProcess

pytestmark = pytest.mark.slow

# id, overrides ({tiny}: a tiny GGUF, {tmp}: this case's directory, {text}: a text file),
# exit code, fragments of the one error line
HARNESS: list[tuple[str, list[str], int, list[str]]] = [
    # every config group: an unknown option names the group, the value and the choices
    ("precision", ["precision=q9_k"], 2, ["precision=q9_k is not a valid choice", "q4_k_m"]),
    ("method", ["method=gptqq"], 2, ["method=gptqq", "(did you mean 'gptq'?)"]),
    ("runtime", ["runtime=vllmm"], 2, ["runtime=vllmm", "llama_cpp", "(did you mean 'vllm'?)"]),
    ("hardware", ["hardware=h200"], 2, ["hardware=h200", "h100_80gb"]),
    ("model", ["model=llama4"], 2, ["model=llama4", "smollm2_135m"]),
    ("workload", ["workload=long_chat"], 2, ["workload=long_chat", "short_chat"]),
    ("eval", ["eval=huge"], 2, ["eval=huge", "full, none, smoke"]),
    ("decision", ["decision=cloud"], 2, ["decision=cloud", "laptop"]),
    ("tracking", ["tracking=postgres"], 2, ["tracking=postgres", "server, sqlite"]),
    ("sweep", ["+sweep=70b"], 2, ["+sweep=70b", "135m_gguf"]),
    ("sweep-no-plus", ["sweep=135m_gguf"], 2, ["+sweep=135m_gguf"]),
    (
        "launcher",
        ["+sweep=135m_gguf", "hydra/launcher=submitit_slurm"],
        2,
        ["hydra/launcher=submitit_slurm", "pip install hydra-submitit-launcher"],
    ),
    # keys: the closest real key, not Hydra's advice to add it with '+'
    (
        "key-workload",
        ["workload.max_new_token=5"],
        2,
        ["workload.max_new_token is not a key", "did you mean workload.max_new_tokens"],
    ),
    ("key-runtime", ["runtime.n_ctxx=512"], 2, ["runtime.n_ctxx", "runtime.n_ctx?"]),
    ("key-hardware", ["hardware.thread=2"], 2, ["hardware.thread", "hardware.threads"]),
    ("key-run", ["run.forced=true"], 2, ["run.forced", "run.force"]),
    ("key-too-long", ["k" * 300 + "=1"], 2, ["(300 characters) is no config key or group"]),
    # values
    ("type", ["workload.repetitions=three"], 2, ["workload.repetitions=three"]),
    ("max-new-tokens", ["workload.max_new_tokens=1"], 2, ["workload.max_new_tokens=1", ">= 2"]),
    ("load-mode", ["workload.mode=sideways"], 2, ["workload.mode=sideways", "closed_loop"]),
    ("rate", ["workload.mode=poisson", "workload.rate=-1"], 2, ["workload.rate=-1.0 must be > 0"]),
    ("loop-lag", ["workload.max_loop_lag_s=0"], 2, ["workload.max_loop_lag_s=0.0 must be > 0"]),
    ("n-ctx", ["runtime.n_ctx=8"], 2, ["runtime.n_ctx=8", ">= 16"]),
    ("n-threads-0", ["runtime.n_threads=0"], 2, ["runtime.n_threads=0 must be >= 1"]),
    ("timeout", ["run.timeout_s=-1"], 2, ["run.timeout_s=-1.0 must be > 0"]),
    (
        "api",
        ["runtime=openai_server", "runtime.api=grpc"],
        2,
        ["runtime.api='grpc' is invalid", "completions, chat"],
    ),
    (
        "launch",
        ["runtime=openai_server", "runtime.launch=tgi"],
        2,
        ["runtime.launch='tgi' is invalid", "llama_cpp_python"],
    ),
    (
        "served-by-launch",
        ["runtime=openai_server", "runtime.launch=llama_cpp_python", "runtime.served_method=gguf"],
        2,
        ["describe an external server"],
    ),
    # a swept axis next to a fault: the fault is named, not the axis
    (
        "swept-and-bad",
        ["+sweep=135m_gguf", "precision=q8_0,q4_k_m", "eval=nosuch"],
        2,
        ["eval=nosuch is not a valid choice"],
    ),
    ("list-without-m", ["precision=q4_k_m,q8_0"], 2, ["precision=q4_k_m,q8_0 lists several", "-m"]),
    ("malformed", ["precision=[q4"], 2, ["malformed override 'precision=[q4'"]),
    # sweep files (in the user's config directory)
    ("yaml-tab", ["+sweep=tab"], 2, ["tab.yaml:5:1: invalid YAML", "never tabs"]),
    ("yaml-bracket", ["+sweep=bracket"], 2, ["bracket.yaml", "invalid YAML", "expected ','"]),
    ("no-header", ["+sweep=noheader"], 2, ["must start with the line '# @package _global_'"]),
    ("sweep-bad-choice", ["+sweep=badchoice"], 2, ["precision=q9_k is not a valid choice"]),
    # impossible work, refused before anything builds or loads
    (
        "context",
        ["runtime.n_ctx=64", "workload.max_new_tokens=100"],
        2,
        ["this cell cannot run: workload.max_new_tokens=100 exceeds the runtime's context of 64"],
    ),
    (
        "context-prompt",
        ["runtime.n_ctx=256", "workload.input_tokens=250"],
        2,
        ["workload.input_tokens=250 + workload.max_new_tokens=64 exceeds"],
    ),
    (
        "threads",
        ["runtime.n_threads=999"],
        2,
        ["runtime.n_threads=999 exceeds this machine's", "run.oversubscribe_threads=true"],
    ),
    (
        "no-fit",
        ["hardware.memory_gb=0.01", "hardware.detect_memory=false"],
        2,
        ["this cell cannot run: predicted not to fit", "run.force_fit=true"],
    ),
    (
        "no-checkpoint",
        ["model=mistral_7b", "runtime=hf", "method=gptq", "precision=int4"],
        2,
        [
            "has no checkpoint for method=gptq precision=int4",
            "model.checkpoints has: awq (int4), gguf (q4_k_m), none",
        ],
    ),
    (
        "no-gguf-file",
        ["model=qwen25_05b", "precision=q5_k_m"],
        2,
        [
            "model.checkpoints has: gguf (q4_k_m, q8_0), none",
            "+model.checkpoints.gguf.files.q5_k_m=",
        ],
    ),
    (
        "repo-id",
        ["model=qwen25_05b", "model.checkpoints.none.repo=Qwen"],
        2,
        ["model.checkpoints.none: repo='Qwen' is not a Hub repo id (org/name)"],
    ),
    (
        "checkpoint-key",
        ["model=qwen25_05b", "+model.checkpoints.gguf.revison=main"],
        2,
        ["model.checkpoints.gguf has unknown key 'revison'; valid: repo, revision"],
    ),
    ("image", ["run.image=vllm"], 2, ["run.image=vllm", "outside a harness image"]),
    # the environment: paths and stores
    (
        "model-path",
        ["model.source.path=/no/such/model.gguf"],
        2,
        ["model.source.path=/no/such/model.gguf: no such file"],
    ),
    ("corrupt-gguf", ["model.source.path={tmp}/bad.gguf"], 2, ["bad.gguf", "corrupt GGUF"]),
    ("cache-dir", ["run.cache_dir=/proc/nope"], 2, ["run.cache_dir=/proc/nope: cannot create it"]),
    ("cache-is-file", ["run.cache_dir={text}"], 2, ["run.cache_dir=", "cannot create it"]),
    (
        "sqlite-proc",
        ["tracking.uri=sqlite:////proc/mlflow.db"],
        2,
        ["cannot open /proc/mlflow.db as SQLite"],
    ),
    ("sqlite-not-db", ["tracking.uri=sqlite:///{text}"], 2, ["as SQLite: file is not a database"]),
    (
        "sqlite-dir",
        ["tracking.uri=sqlite:////no/such/dir/m.db"],
        2,
        ["directory /no/such/dir does not exist"],
    ),
    (
        "sqlite-scheme",
        ["tracking.uri=mlflow.db"],
        2,
        ["tracking.uri=mlflow.db is not a SQLite URI"],
    ),
    ("server-uri", ["tracking=server"], 2, ["tracking.uri"]),
    ("server-scheme", ["tracking=server", "tracking.uri=ftp://h:1"], 2, ["must be http(s)://"]),
    (
        "server-down",
        ["tracking=server", "tracking.uri=http://127.0.0.1:9"],
        2,
        ["tracking.uri=http://127.0.0.1:9: MLflow server unreachable"],
    ),
    (
        "server-secret",
        ["tracking=server", "tracking.uri=http://bob:hunter2@127.0.0.1:9"],
        2,
        ["tracking.uri=http://127.0.0.1:9: MLflow server unreachable"],
    ),
]
# the fake runner's cell: every value and store case above must fail before it runs
FAKE = {"cache-dir", "cache-is-file", "sqlite-proc", "sqlite-not-db", "sqlite-dir",
        "sqlite-scheme", "server-down", "server-secret", "server-scheme"}  # fmt: skip

REPORTS: list[tuple[str, list[str], list[str]]] = [
    ("no-sweep", [], ["sweep= is required"]),
    ("unknown-option", ["sweep=x", "bogus=1"], ["option=bogus is not a valid choice", "against"]),
    ("decision", ["sweep=x", "decision=cloud"], ["decision=cloud", "serving_box"]),
    ("no-store", ["sweep=x"], ["no MLflow store there"]),
    ("unknown-sweep", ["sweep=nosuch"], ["sweep=nosuch is not in"]),
    ("unknown-against", ["sweep=fake_matrix", "against=nosuch"], ["against=nosuch is not in"]),
]

SWEEP_FILES = {
    "tab": "# @package _global_\ndefaults:\n  - override /model: smollm2_135m\nhydra:\n\tmode: X\n",
    "bracket": "# @package _global_\nhydra: [unclosed\n",
    "noheader": "defaults:\n  - override /model: smollm2_135m\n",
    "badchoice": "# @package _global_\ndefaults:\n  - override /precision: q9_k\n",
}


@pytest.fixture(scope="module")
def userconf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("userconf")
    (root / "sweep").mkdir()
    for name, text in SWEEP_FILES.items():
        (root / "sweep" / f"{name}.yaml").write_text(text)
    return root


def run(
    module: str, args: list[str], cwd: Path, conf: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", module]
    if module == "harness":
        argv += [
            f"hydra.searchpath=[file://{TEST_CONF},file://{conf}]",
            f"run.cache_dir={cwd / 'cache'}",
        ]
    return subprocess.run(argv + args, cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line(
    r: subprocess.CompletedProcess[str], code: int, prefix: str, fragments: list[str]
) -> str:
    assert r.returncode == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout and "Error executing job" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def nothing_half_written(where: Path) -> None:
    for db in where.rglob("*.db"):
        with sqlite3.connect(db) as c:
            tables = {t for (t,) in c.execute("select name from sqlite_master where type='table'")}
            if "runs" in tables:
                assert c.execute("select count(*) from runs where status='RUNNING'").fetchone() == (
                    0,
                )
    assert not list(where.rglob("*.tmp-*")), "a temporary artifact was left behind"


@pytest.mark.parametrize(
    ("args", "code", "fragments"), [c[1:] for c in HARNESS], ids=[c[0] for c in HARNESS]
)
def test_harness_bad_input(
    args: list[str], code: int, fragments: list[str], request: pytest.FixtureRequest,
    tiny_gguf: Path, userconf: Path, tmp_path: Path,
) -> None:  # fmt: skip
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    (tmp_path / "notes.txt").write_text("not a database, not a directory\n")
    case = request.node.callspec.id
    subs = {"{tiny}": str(tiny_gguf), "{tmp}": str(tmp_path), "{text}": str(tmp_path / "notes.txt")}
    for k, v in subs.items():
        args = [a.replace(k, v) for a in args]
    base = fake_cell(tiny_gguf) if case in FAKE else []
    r = run("harness", [*base, *args], tmp_path, userconf)
    line = one_line(r, code, "harness: error: ", fragments)
    assert "hunter2" not in r.stderr + r.stdout + line
    nothing_half_written(tmp_path)


@pytest.fixture(scope="module")
def store_with_a_sweep(
    tiny_gguf: Path, userconf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    where = tmp_path_factory.mktemp("reports")
    r = run("harness", ["+sweep=fake_matrix", f"model.source.path={tiny_gguf}"], where, userconf)
    assert r.returncode == 0, r.stderr
    return where


@pytest.mark.parametrize(
    ("args", "fragments"), [c[1:] for c in REPORTS], ids=[c[0] for c in REPORTS]
)
def test_reports_bad_input(
    args: list[str], fragments: list[str], request: pytest.FixtureRequest,
    store_with_a_sweep: Path, tmp_path: Path,
) -> None:  # fmt: skip
    empty = request.node.callspec.id in ("no-store",)
    r = run("reports", args, tmp_path if empty else store_with_a_sweep)
    one_line(r, 2, "reports: error: ", fragments)
    nothing_half_written(store_with_a_sweep)


def server_cell(url: str, *extra: str) -> list[str]:
    return ["runtime=openai_server", f"runtime.base_url={url}", "workload=tiny", *extra]


@pytest.mark.parametrize(
    ("fault", "extra", "status", "reason"),
    [
        ("down", [], "failed", "cannot reach http://127.0.0.1:9"),
        ("http_503", [], "failed", "HTTP 503: synthetic fault"),
        ("truncate", [], "failed", "without a finish_reason or usage"),
        (
            "slow",
            ["runtime.timeout_s=0.3", "workload.min_duration_s=30"],
            "failed",
            "stopped after 8 failed requests",
        ),
    ],
)
def test_servers_that_fail_fail_the_cell_not_the_sweep(
    fault: str, extra: list[str], status: str, reason: str, userconf: Path, tmp_path: Path
) -> None:
    """A server answering 500s, cutting its streams or too slow for the timeout: the cell is
    recorded with the server's own words, exit 1, one line per cell, nothing RUNNING."""
    from mlflow.tracking import MlflowClient

    flags = {"http_503": ["--fault", "http_503", "--fault-after", "3"], "truncate": [
        "--fault", "truncate", "--fault-after", "2"], "slow": ["--itl-s", "1.0"]}  # fmt: skip
    if fault == "down":
        r = run("harness", server_cell("http://127.0.0.1:9", *extra), tmp_path, userconf)
    else:
        with ServerProcess(*flags[fault]) as server:
            r = run("harness", server_cell(server.url, *extra), tmp_path, userconf)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    (cell,) = [x for x in runs if x.data.tags.get("harness.kind") == "cell"]
    assert cell.data.tags["harness.status"] == ("failed" if status == "failed" else "invalid")
    text = cell.data.tags.get("harness.reason", "") + cell.data.tags.get(
        "harness.invalid_reasons", ""
    )
    assert reason in text, text
    nothing_half_written(tmp_path)
    assert os.path.exists(tmp_path / "mlflow.db")

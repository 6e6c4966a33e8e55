"""Hub checkpoints through huggingface_hub against a loopback stand-in for the Hub's API
(tests/hub_server.py): plan=true shows download sizes from the Hub's metadata, and every
mistake the Hub reports ends in one line naming the repo and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HarnessRun
from tests.hub_cache import commit_of
from tests.hub_server import FakeHub, Repo

GGUF = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
Q4, Q8 = "qwen2.5-0.5b-instruct-q4_k_m.gguf", "qwen2.5-0.5b-instruct-q8_0.gguf"


def _file(path: Path, size: int) -> Path:
    path.write_bytes(b"\x00" * size)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[FakeHub, dict[str, str]]]:
    src = tmp_path / "src"
    src.mkdir()
    files = {Q4: _file(src / Q4, 3 * 2**20), Q8: _file(src / Q8, 5 * 2**20)}
    fake = FakeHub(
        {
            GGUF: Repo(commit_of("gguf"), files),
            "org/gated": Repo(commit_of("gated"), {Q4: files[Q4]}, gated=True),
        }
    )
    url = fake.start()
    env = {"HF_ENDPOINT": url, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    yield fake, env
    fake.stop()


def test_plan_shows_the_download_from_the_hubs_metadata(
    harness_cli: HarnessRun, hub: tuple[FakeHub, dict[str, str]]
) -> None:
    fake, env = hub
    r = harness_cli("model=qwen25_05b", "precision=q4_k_m", "plan=true", env=env)
    assert r.returncode == 0, r.stderr
    commit = commit_of("gguf")[:12]
    assert f"C1  {GGUF}@main ({commit}): 3.0 MiB, download: 3.0 MiB" in r.stdout
    assert "3.0 MiB to download; " in r.stdout and " free: fits" in r.stdout
    assert not fake.downloads  # plan downloads nothing


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["model.checkpoints.gguf.repo=org/missing"],
            "model.checkpoints.gguf.repo=org/missing: no such model on the Hub, or it is "
            "private (set HF_TOKEN to a token that can read it)",
        ),
        (
            ["model.checkpoints.gguf.revision=v9"],
            f"model.checkpoints.gguf.revision=v9: {GGUF} has no such branch, tag or commit",
        ),
        (
            ["model.checkpoints.gguf.repo=org/gated"],
            "model.checkpoints.gguf.repo=org/gated is gated: accept its license at "
            "https://huggingface.co/org/gated and set HF_TOKEN",
        ),
        (
            ["model.checkpoints.gguf.files.q4_k_m=*q5_k_m.gguf"],
            f"model.checkpoints.gguf: no file of {GGUF}@main matches *q5_k_m.gguf",
        ),
        (
            ["model.checkpoints.gguf.files.q4_k_m=*.gguf"],
            "model.checkpoints.gguf: the pattern matches several files",
        ),
    ],
    ids=["unknown-repo", "revision", "gated", "no-file", "several-quants"],
)
def test_what_the_hub_refuses_is_one_line(
    harness_cli: HarnessRun,
    hub: tuple[FakeHub, dict[str, str]],
    overrides: list[str],
    fragment: str,
) -> None:
    _, env = hub
    r = harness_cli("model=qwen25_05b", "precision=q4_k_m", *overrides, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("harness: error: ") and fragment in line, line
    assert "Traceback" not in r.stderr

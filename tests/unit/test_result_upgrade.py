"""Result files of every older schema load, upgraded, from golden files written by the code of
each version (tests/data/results/, made with `git show <commit>:harness/result.py`)."""

import json
import shutil
from pathlib import Path

import pytest

from harness.results.result import SCHEMA_VERSION, Status, dump_result, load_result, upgrade

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "results"


@pytest.mark.parametrize("name", ["v1.json", "v2.json", "v2_settings.json", "v3.json"])
def test_every_version_loads_with_the_same_numbers(name: str) -> None:
    r = load_result(GOLDEN / name)
    assert r.schema_version == SCHEMA_VERSION == 3
    assert r.metrics == {"output_throughput_tok_s": 154.6, "ttft_p50_s": 0.0255, "model_bpw": 6.273}
    assert r.per_rep == {"output_throughput_tok_s": [150.1, 155.0, 158.7]}
    assert r.absent == {"ttft_p95_s": "24 samples, p95 needs >= 59"}
    assert r.artifact is not None and r.artifact.file_type == "MOSTLY_Q4_K_M"


def test_what_a_version_did_not_record_is_empty_not_invented() -> None:
    v1 = load_result(GOLDEN / "v1.json")
    assert (v1.problems, v1.flags, v1.settings, v1.tags) == ([], [], {}, {})
    v2 = load_result(GOLDEN / "v2.json")
    assert v2.flags == ["unstable: ttft_mean_s: CV 13.8% >= 10%"] and v2.settings == {}
    v2s = load_result(GOLDEN / "v2_settings.json")
    assert v2s.status is Status.invalid and v2s.settings == {"sampling": "greedy"}
    assert v2s.problems == ["1 request(s) produced 63 tokens, not 64"]
    assert load_result(GOLDEN / "v3.json").tags == {"quality.role": "variant"}
    failed = load_result(GOLDEN / "v1_failed.json")
    assert failed.status is Status.failed and failed.artifact is None
    assert (failed.error or "").endswith("RuntimeError: boom\n")


def test_an_upgraded_file_round_trips_in_the_current_schema(tmp_path: Path) -> None:
    shutil.copy(GOLDEN / "v1.json", tmp_path / "old.json")
    dump_result(load_result(tmp_path / "old.json"), tmp_path / "new.json")
    data = json.loads((tmp_path / "new.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert load_result(tmp_path / "new.json") == load_result(GOLDEN / "v1.json")


@pytest.mark.parametrize(
    ("version", "message"),
    [(4, "written by a newer harness; this one reads up to 3"), (0, "not a known version")],
)
def test_unknown_versions_are_refused_naming_the_file(
    tmp_path: Path, version: int, message: str
) -> None:
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps({**json.loads((GOLDEN / "v3.json").read_text()), "schema_version": version})
    )
    with pytest.raises(ValueError, match=message) as e:
        load_result(path)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError):
        upgrade({"status": "ok"})


def test_mlflow_records_carry_their_schema_and_older_ones_read_as_version_1() -> None:
    from harness.config.errors import UserError
    from harness.metrics import names
    from harness.tracking.record import RECORD_SCHEMA_VERSION
    from harness.tracking.store import RunData, upgrade_record

    def run(tags: dict[str, str]) -> RunData:
        return RunData("r1", "cell", "FINISHED", tags, {}, {"output_throughput_tok_s": 1.0})

    untagged = run({names.STATUS: "ok"})  # logged before records carried a schema
    assert upgrade_record(untagged) == untagged
    assert upgrade_record(run({names.RECORD_SCHEMA: str(RECORD_SCHEMA_VERSION)})).run_id == "r1"
    with pytest.raises(UserError, match="record schema '2'; this harness reads 1 to 1"):
        upgrade_record(run({names.RECORD_SCHEMA: "2"}))

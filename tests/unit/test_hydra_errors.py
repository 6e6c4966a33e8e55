from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.hydra_errors import one_line
from harness.config.register import register_configs

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def error_line(*overrides: str) -> str:
    with initialize_config_dir(version_base="1.3", config_dir=CONF), pytest.raises(Exception) as e:
        compose("config", overrides=list(overrides))
    line = one_line(e.value)
    assert line is not None and "\n" not in line
    return line


def test_unknown_option_lists_choices_and_closest() -> None:
    line = error_line("precision=q9_k")
    assert line.startswith("precision=q9_k is not a valid choice; choose one of: bf16, f16,")
    assert "q8_0" in line


def test_unknown_sweep() -> None:
    line = error_line("+sweep=135m_ggfu")
    assert line == (
        "+sweep=135m_ggfu is not a valid choice; choose one of: 135m_gguf, 135m_runtimes, "
        "70b_int4, gpu_check (did you mean '135m_gguf'?)"
    )


def test_malformed_override() -> None:
    assert error_line("precision=[") == (
        "malformed override 'precision=[': no viable alternative at input '['"
    )


def test_wrong_type() -> None:
    line = error_line("workload.repetitions=abc")
    assert "workload.repetitions=abc" in line and "Integer" in line


def test_unknown_key() -> None:
    assert "workload.nope" in error_line("workload.nope=1")


def test_not_a_user_error() -> None:
    assert one_line(RuntimeError("bug")) is None

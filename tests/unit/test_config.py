from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config import HarnessConfig, from_container, register_configs, to_container
from harness.errors import UserError
from harness.plan import to_typed
from runners.llama_cpp import LlamaCppConfig

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()


def composed(*overrides: str) -> HarnessConfig:
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return to_typed(compose("config", overrides=list(overrides)))


def test_default_config_is_one_typed_cell() -> None:
    cfg = composed()
    assert isinstance(cfg, HarnessConfig)
    assert isinstance(cfg.runtime, LlamaCppConfig)
    assert (cfg.model.name, cfg.method.name, cfg.precision.name) == (
        "SmolLM2-135M-Instruct",
        "gguf",
        "q4_k_m",
    )
    assert cfg.hardware.device.value == "cpu"
    assert cfg.tracking.uri == "sqlite:///mlflow.db"
    assert cfg.workload.repetitions >= 3


def test_container_round_trip_keeps_runner_subclass() -> None:
    cfg = composed("runtime.n_threads=1", "workload.max_new_tokens=16")
    back = from_container(to_container(cfg))
    assert back == cfg
    assert isinstance(back.runtime, LlamaCppConfig) and back.runtime.n_threads == 1


def test_validation_error_is_a_one_line_user_error() -> None:
    with pytest.raises(UserError, match=r"workload.repetitions=0 must be >= 1"):
        composed("workload.repetitions=0")


def test_server_tracking_needs_a_uri() -> None:
    with pytest.raises(UserError, match=r"tracking\.uri"):
        composed("tracking=server")

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.convert import from_container, to_container, to_typed
from harness.config.errors import UserError
from harness.config.register import register_configs
from harness.config.schema import HarnessConfig, LoadMode, WorkloadConfig
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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["workload.mode=poisson", "workload.rate=0"], "workload.rate=0.0 must be > 0"),
        (["workload.mode=poisson"], "workload.mode=poisson needs workload.rate"),
        (["workload.concurrency=0"], "workload.concurrency=0 must be >= 1"),
        (["workload.max_new_tokens=0"], "workload.max_new_tokens=0 must be >= 1"),
        (["workload.warmup_requests=8"], "workload.warmup_requests=8 leaves no measured request"),
        (["workload.max_concurrency=0"], "workload.max_concurrency=0 must be >= 1 or null"),
        (["+workload.slo.ttft_ms=5"], "unknown metric 'ttft_ms'; valid: ttft_s, ttfct_s"),
        (["workload.slo.ttft_s=-1"], "workload.slo.ttft_s=-1.0 must be > 0"),
        (["hardware.price_per_hour=null"], "hardware profile 'cpu_local' has no price_per_hour"),
    ],
)
def test_impossible_workloads_fail_before_anything_loads(overrides, message) -> None:
    with pytest.raises(UserError, match=None) as e:
        composed(*overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_cost_can_be_turned_off_without_a_price() -> None:
    cfg = composed("hardware.price_per_hour=null", "cost.enabled=false")
    assert cfg.hardware.price_per_hour is None


def test_cpu_profile_states_its_assumed_price() -> None:
    hw = composed().hardware
    assert hw.price_per_hour and hw.price_snapshot
    assert hw.price_source and hw.price_source.startswith("assumption")


def test_rate_sweep_needs_an_slo() -> None:
    with pytest.raises(ValueError, match=r"workload\.mode=rate_sweep needs workload\.slo"):
        WorkloadConfig(name="w", prompts=["a"], mode=LoadMode.rate_sweep, rate=1.0)


def test_credentials_leave_the_uri_before_hydra_sees_it() -> None:
    from harness.config.credentials import move_credentials
    from harness.config.schema import TrackingBackend, TrackingConfig
    from harness.tracking.sink import resolve_uri

    env: dict[str, str] = {}
    argv = ["tracking=server", "tracking.uri=https://al%40ice:p%3Ass@mlflow.lan:5000/x", "x=1"]
    assert move_credentials(argv, env) == [
        "tracking=server",
        "tracking.uri=https://mlflow.lan:5000/x",
        "x=1",
    ]
    assert env == {"MLFLOW_TRACKING_USERNAME": "al@ice", "MLFLOW_TRACKING_PASSWORD": "p:ss"}
    # a password that reached the config from a file is refused, redacted
    with pytest.raises(UserError) as e:
        resolve_uri(TrackingConfig(TrackingBackend.server, "http://bob:hunter2@127.0.0.1:1"))
    assert "hunter2" not in str(e.value)
    assert str(e.value).startswith(
        "tracking.uri=http://***@127.0.0.1:1 carries a password in a config file"
    )

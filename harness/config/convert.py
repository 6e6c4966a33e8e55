"""The edge between Hydra and typed code: a composed DictConfig becomes a ``HarnessConfig``
once, here; a resolved config travels to a worker as plain JSON-able data and back."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from harness.config.errors import UserError
from harness.config.schema import HarnessConfig
from runners import get_runner

SOURCE_KEYS = ("package", "file", "path")


def to_typed(cfg: DictConfig) -> HarnessConfig:
    """Composed DictConfig -> typed dataclasses, once, at the edge."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
        source = cfg.get("model", {}).get("source")
        # a model known by its architecture only ships an empty source, so that
        # model.source.path=... can fill it; empty means none
        if isinstance(source, DictConfig) and not any(source.get(k) for k in SOURCE_KEYS):
            cfg.model.source = None
    try:
        if OmegaConf.get_type(cfg) is not HarnessConfig:  # composed outside Hydra (fast plan)
            schema = OmegaConf.structured(HarnessConfig)
            schema.runtime = OmegaConf.structured(get_runner(str(cfg.runtime.name)).Config)
            merged = OmegaConf.merge(schema, cfg)
            assert isinstance(merged, DictConfig)
            cfg = merged
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        key = e.full_key
        hint = " (e.g. tracking.uri=http://mlflow.internal:5000)" if key == "tracking.uri" else ""
        raise UserError(f"{key} has no value; set {key}=...{hint}") from None
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        key = getattr(e, "full_key", None)
        raise UserError(
            f"config error at {key}: {msg}" if key else f"config error: {msg}"
        ) from None
    except ValueError as e:
        raise UserError(f"config error: {e}") from None
    assert isinstance(obj, HarnessConfig)
    hw = obj.hardware
    if obj.cost.enabled and hw.price_per_hour is None:
        raise UserError(
            f"cost is requested but hardware profile {hw.name!r} has no price_per_hour; set "
            "hardware.price_per_hour (with price_snapshot and price_source) or cost.enabled=false"
        )
    return obj


def from_container(data: dict[str, Any]) -> HarnessConfig:
    """Rebuild the typed config from its resolved plain form (as written into cell.json)."""
    schema = OmegaConf.structured(HarnessConfig)
    schema.runtime = OmegaConf.structured(get_runner(data["runtime"]["name"]).Config)
    merged = OmegaConf.merge(schema, data)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, HarnessConfig)
    return obj


def to_container(cfg: HarnessConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (enums as their values)."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}

"""Hydra and OmegaConf composition errors -> one actionable line (None: not a user error)."""

from __future__ import annotations

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException

from harness.config.errors import choice_error


def _lines(text: str) -> list[str]:
    """Message lines without OmegaConf's full_key/object_type trailer."""
    out = []
    for line in str(text).splitlines():
        line = line.strip()
        if line.startswith(("full_key:", "reference_type=", "object_type=")):
            break
        if line:
            out.append(line)
    return out


def _missing(e: MissingConfigException) -> str:
    if e.missing_cfg_file and "/" in e.missing_cfg_file and e.options is not None:
        group, _, value = e.missing_cfg_file.rpartition("/")
        plus = "+" if group == "sweep" else ""
        return str(choice_error(f"{plus}{group}", value, e.options))
    return " ".join(_lines(str(e)))


def one_line(e: BaseException) -> str | None:
    if isinstance(e, MissingConfigException):
        return _missing(e)
    if isinstance(e, OverrideParseException):
        detail = _lines(str(e))[0].split(" (See https://")[0]
        return f"malformed override '{e.override}': {detail}"
    if isinstance(e, ConfigCompositionException) and str(e).startswith("Ambiguous value"):
        arg = str(e).split("'")[1]
        return (
            f"{arg} lists several values: sweep them with -m (or a +sweep=NAME file), "
            "or quote the value to pass one string"
        )
    if isinstance(e, ConfigCompositionException | OmegaConfBaseException):
        text = " ".join(_lines(str(e)))
        cause = e.__cause__
        if isinstance(cause, OmegaConfBaseException):
            text += ": " + " ".join(_lines(str(cause)))
        return text
    return None

"""Hydra and OmegaConf composition errors -> one actionable line (None: not a user error)."""

from __future__ import annotations

import dataclasses
import difflib
import errno
import re

import yaml
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
        message = str(choice_error(f"{plus}{group}", value, e.options))
        if group == "hydra/launcher":
            message += " (others come with their plugin, e.g. pip install hydra-submitit-launcher)"
        return message
    return " ".join(_lines(str(e)))


def _yaml(e: yaml.YAMLError) -> str:
    """A config file that is not valid YAML: where, and what."""
    mark = getattr(e, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "a config"
    problem = str(getattr(e, "problem", None) or e).strip()
    hint = " (YAML indents with spaces, never tabs)" if "'\\t'" in problem else ""
    return f"{where}: invalid YAML: {problem}{hint}"


def _unknown_key(e: BaseException) -> str | None:
    """An override of a key the schema does not have: the closest real keys, not Hydra's
    advice to add it with '+'."""
    cause = e.__cause__
    schema = getattr(cause, "object_type", None)
    full_key, key = getattr(cause, "full_key", None), getattr(cause, "key", None)
    if not (dataclasses.is_dataclass(schema) and full_key and key):
        return None
    fields = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_")]
    if str(key) in fields:  # a real key with a bad value: the caller's message says which
        return None
    group = str(full_key).rpartition(".")[0]
    close = difflib.get_close_matches(str(key), fields, n=2)
    hint = " (did you mean " + " or ".join(f"{group}.{c}" for c in close) + "?)" if close else ""
    return f"{full_key} is not a key of {group or 'the config'}{hint}; keys: {', '.join(fields)}"


def _no_header(text: str) -> str | None:
    """A sweep file without '# @package _global_' puts its overrides under 'sweep.'."""
    m = re.search(r"In '(sweep/[^']+)': Could not override '(\w+)@sweep\.", text)
    if m is None:
        return None
    return (
        f"conf/{m.group(1)}.yaml must start with the line '# @package _global_' (without it "
        f"its defaults land under 'sweep.' and cannot override /{m.group(2)})"
    )


def sweep_error(conf_dir: str, overrides: list[str]) -> BaseException | None:
    """Why the command line fails to compose as a sweep, if it does. Hydra decides run or
    multirun by composing once; when that fails for another reason (a bad option next to a
    swept axis) it falls back to a plain run and blames the swept axis for listing several
    values. This composes the way the sweep would, to find the real fault."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(conf_dir))
    try:
        loader.load_configuration(
            "config", list(overrides), RunMode.MULTIRUN, validate_sweep_overrides=False
        )
    except Exception as e:
        return e
    return None


def one_line(e: BaseException) -> str | None:
    if isinstance(e, yaml.YAMLError):
        return _yaml(e)
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        name = str(e.filename or "").rsplit("/", 1)[-1]
        return f"override key '{name[:40]}…' ({len(name)} characters) is no config key or group"
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
        if (found := _no_header(text) or _unknown_key(e)) is not None:
            return found
        cause = e.__cause__
        if isinstance(cause, OmegaConfBaseException):
            text += ": " + " ".join(_lines(str(cause)))
        return text
    return None

"""Credentials in a tracking URI, moved out of the config before anything is written.

``tracking.uri=http://user:secret@host:5000`` on the command line would be copied verbatim into
Hydra's own files (``.hydra/overrides.yaml``, ``multirun.yaml``), the run's tags and artifacts.
So the CLI moves the user info into MLflow's own variables (``MLFLOW_TRACKING_USERNAME``,
``MLFLOW_TRACKING_PASSWORD``: MLflow sends them as HTTP basic auth) and hands Hydra the URI
without it. A URI with a password that reaches the config another way (a config file) is
refused with one line before anything runs.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from urllib.parse import unquote, urlsplit, urlunsplit

USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
KEYS = ("tracking.uri=", "+tracking.uri=", "++tracking.uri=")


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """The URI without user info, then the (percent-decoded) user and password."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(netloc=netloc)), user, password


def move_credentials(argv: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """``argv`` with any tracking URI's user info moved into ``environ``."""
    out = []
    for arg in argv:
        key = next((k for k in KEYS if arg.startswith(k)), None)
        if key is None:
            out.append(arg)
            continue
        uri, user, password = split_userinfo(arg[len(key) :])
        if user is not None:
            environ[USER_ENV] = user
        if password is not None:
            environ[PASSWORD_ENV] = password
        out.append(key + uri)
    return out


def has_password(uri: str) -> bool:
    return urlsplit(uri).password is not None

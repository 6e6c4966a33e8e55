"""User errors: printed as one line naming the bad value, exit code 2, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input (config, paths, tracking location): the user can fix it, so no traceback."""


def choice_error(what: str, value: str, choices: Iterable[str]) -> UserError:
    options = sorted(choices)
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(options) if options else "none available"
    return UserError(f"{what}={value} is not a valid choice; choose one of: {listed}{hint}")

"""`python -m harness [overrides]`: one cell, or a sweep with `+sweep=NAME`.

Hydra prints its own errors as multi-line reports and exits 1. We ask it to re-raise
(HYDRA_FULL_ERROR) and print one line naming the bad value instead, with exit code 2, unless
the user set HYDRA_FULL_ERROR to debug. A user error is never shown as a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins

from harness.config.errors import UserError
from harness.config.hydra_errors import one_line
from harness.config.register import register_configs
from harness.sweep.launch import HarnessTask
from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeper
from runners import UnknownRunnerError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_CONFIG_ERROR, EXIT_INTERRUPTED = 2, 130


def register() -> None:
    """The config schemas, and the sweeper plugin: Hydra finds plugins by walking the
    hydra_plugins namespace, which editable installs hide behind an import hook, so the class
    is registered directly (works for every install)."""
    register_configs()
    Plugins.instance().register(HarnessSweeper)


def main() -> None:
    debug = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register()
    task = HarnessTask()
    try:
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)()
        if task.error is not None:
            raise task.error
    except KeyboardInterrupt:
        print("harness: interrupted; finished cells are recorded", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (UserError, UnknownRunnerError) as e:
        if debug:
            raise
        print(f"harness: error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except Exception as e:
        message = one_line(e)
        if debug or message is None:
            raise
        print(f"harness: error: {message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.exit(task.exit_code)

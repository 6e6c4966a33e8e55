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
from omegaconf import DictConfig

from harness.config.errors import UserError
from harness.config.hydra_errors import one_line
from harness.config.schema import register_configs
from harness.sweep.launch import exit_code, run_task, user_error
from runners import UnknownRunnerError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_CONFIG_ERROR, EXIT_INTERRUPTED = 2, 130


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _task(cfg: DictConfig) -> object:
    return run_task(cfg)


def main() -> None:
    debug = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register_configs()
    try:
        _task()
        error = user_error()
        if error is not None:
            raise error
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
    sys.exit(exit_code())

"""`python -m harness [overrides]`: one cell, or a sweep with `+sweep=NAME`.

Hydra prints its own errors as multi-line reports and exits 1. We ask it to re-raise
(HYDRA_FULL_ERROR) and print one line naming the bad value instead, with exit code 2, unless
the user set HYDRA_FULL_ERROR to debug. A user error is never shown as a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins

from harness.config.credentials import move_credentials
from harness.config.errors import UserError
from harness.config.hydra_errors import one_line, sweep_error
from harness.config.register import register_configs
from harness.sweep.launch import HarnessTask
from harness.tracking.sink import TrackingError
from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeper
from runners import UnknownRunnerError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# Exit status (docs/usage.md): 0 every cell recorded and none failed; 1 a cell failed (the
# sweep went on); 2 a config or input error, nothing ran; 3 the tracking store failed; 130
# interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (both: finished cells kept, the sweep's run
# marked KILLED).
EXIT_CONFIG_ERROR, EXIT_TRACKING, EXIT_INTERRUPTED = 2, 3, 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: workers are killed, finished cells kept."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated("terminated by SIGTERM")


def register() -> None:
    """The config schemas, and the sweeper plugin: Hydra finds plugins by walking the
    hydra_plugins namespace, which editable installs hide behind an import hook, so the class
    is registered directly (works for every install)."""
    register_configs()
    Plugins.instance().register(HarnessSweeper)


def _null_parent(e: BaseException) -> str | None:
    """OmegaConf's assertion when an override sets a key below a node that is null."""
    if not (isinstance(e, AssertionError) and "Unexpected type for root: NoneType" in str(e)):
        return None
    dotted = [a.split("=", 1)[0].lstrip("+~") for a in sys.argv[1:] if "." in a.split("=", 1)[0]]
    dotted = [d for d in dotted if not d.startswith("hydra.")]
    parents = ", ".join(sorted({d.rsplit(".", 1)[0] for d in dotted}))
    return (
        f"an override sets a key below a node that is null in the chosen config (one of: "
        f"{parents}); set that node whole, e.g. 'model.source={{path: /path/to/model.gguf}}'"
    )


# The Hub client logs every HTTP request at INFO (noise on the console and in Hydra's log
# file), and warns about what the harness then says in its own one line.
QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "httpx2": logging.WARNING,
    "huggingface_hub": logging.ERROR,
}


def _quiet_http_clients() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def main() -> None:
    debug = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register()
    # before Hydra sees argv: it writes every override into files
    sys.argv[1:] = move_credentials(sys.argv[1:], os.environ)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _quiet_http_clients()
    task = HarnessTask()
    try:
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)()
        if task.error is not None:
            raise task.error
    except KeyboardInterrupt as e:
        by = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
        print(
            f"harness: interrupted by {by}; finished cells are recorded, the sweep's run is "
            "marked KILLED",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED + (13 if isinstance(e, Terminated) else 0))
    except TrackingError as e:
        if debug:
            raise
        print(f"harness: error: {e}", file=sys.stderr)
        sys.exit(EXIT_TRACKING)
    except (UserError, UnknownRunnerError) as e:
        if debug:
            raise
        print(f"harness: error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except Exception as e:
        message = one_line(e) or _null_parent(e)
        if message is not None and " lists several values" in message:
            real = sweep_error(str(CONF_DIR), sys.argv[1:])  # the fault Hydra hid
            message = (one_line(real) if real is not None else None) or message
        if debug or message is None:
            raise
        print(f"harness: error: {message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.exit(task.exit_code)

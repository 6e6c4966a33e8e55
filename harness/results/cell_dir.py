"""What a cell's directory holds: the files its parent and its worker processes exchange (plain
JSON, so nothing else crosses the process boundary) and the ones uploaded as artifacts."""

from __future__ import annotations

from harness.results.events import EVENTS_DIR

CELL_FILE = "cell.json"  # the worker's instructions: config, source, derivation steps, eval role
ARTIFACT_FILE = "artifact.json"  # the model file the cell loads (from the cache or just built)
RESULT_FILE = "result.json"  # what the measurement worker hands back (results/result.py)
EVENTS_FILE = EVENTS_DIR  # raw request events, one JSONL per repetition (results/events.py)
ENV_FILE = "environment.json"  # the machine and runtime versions the worker saw
RESOURCES_FILE = "resources.jsonl"  # raw resource samples and repetition marks
CONFIG_FILE = "config.yaml"  # the resolved config, for a reader
# Written by a runner that launches a server in its own process group; read by the parent so
# that a worker killed at its deadline, or crashed, cannot leave the server running.
SERVER_PGID_FILE = "server.pgid"
LOGS = ("prepare.log", "run.log", "server.log")

"""harness: declarative benchmarking of quantized LLM inference.

Run it with ``python -m harness +sweep=NAME``. The names below are the stable Python API;
importing this package never imports an inference runtime or MLflow.
"""

from harness.config.errors import UserError
from harness.config.register import register_configs
from harness.config.schema import (
    HardwareConfig,
    HarnessConfig,
    MethodConfig,
    ModelConfig,
    ModelSource,
    PrecisionConfig,
    RunControl,
    TrackingConfig,
    WorkloadConfig,
)
from harness.metrics.compare import Comparison, compare
from harness.metrics.derive import ESTIMATOR_VERSION, derive
from harness.metrics.stats import percentile, summarize
from harness.plan.cell import Cell
from harness.plan.matrix import cell_key
from harness.results.events import RepetitionInfo, RequestRecord, read_log
from harness.results.result import (
    SCHEMA_VERSION,
    ArtifactInfo,
    CellResult,
    Outcome,
    Status,
    load_result,
)
from harness.tracking.store import compare_runs

__all__ = [
    "ESTIMATOR_VERSION",
    "SCHEMA_VERSION",
    "ArtifactInfo",
    "Cell",
    "CellResult",
    "Comparison",
    "HardwareConfig",
    "HarnessConfig",
    "MethodConfig",
    "ModelConfig",
    "ModelSource",
    "Outcome",
    "PrecisionConfig",
    "RepetitionInfo",
    "RequestRecord",
    "RunControl",
    "Status",
    "TrackingConfig",
    "UserError",
    "WorkloadConfig",
    "cell_key",
    "compare",
    "compare_runs",
    "derive",
    "load_result",
    "percentile",
    "read_log",
    "register_configs",
    "summarize",
]

"""Predicted vs measured peak memory of a finished sweep's cells, from MLflow.

    python benchmarks/memory_prediction.py [--sweep 135m_gguf] [--uri sqlite:///mlflow.db]

Prints, per cell of the latest run of the sweep: the GGUF's real bpw, tensor bytes + header
against the file size, the predicted and measured peak (MiB) and their ratio (measured /
predicted; the issue's target on the CPU sweep is 0.75-1.25).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main() -> None:
    from mlflow.tracking import MlflowClient

    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default="135m_gguf")
    ap.add_argument("--uri", default="sqlite:///mlflow.db")
    ap.add_argument("--experiment", default="harness")
    args = ap.parse_args()
    client = MlflowClient(tracking_uri=args.uri)
    exp = client.get_experiment_by_name(args.experiment)
    assert exp is not None, f"no experiment {args.experiment} in {args.uri}"
    parents = client.search_runs(
        [exp.experiment_id],
        f"attributes.run_name = '{args.sweep}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert parents, f"no sweep {args.sweep} in {args.uri}"
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'"
    )
    mib = 2**20
    print("| cell | bpw | file MiB | predicted MiB | measured MiB | ratio |")
    print("|---|---|---|---|---|---|")
    for run in sorted(children, key=lambda r: r.info.start_time):
        m = run.data.metrics
        if "memory.prediction_ratio" not in m:
            why = run.data.tags.get("memory.unpredicted", "-")
            print(f"| {run.info.run_name} | - | - | - | - | {why} |")
            continue
        print(
            f"| {run.info.run_name} | {m.get('model_bpw', float('nan')):.2f} "
            f"| {m.get('model_file_bytes', 0) / mib:.1f} "
            f"| {m['memory.predicted_peak_bytes'] / mib:.1f} "
            f"| {m['memory.measured_peak_bytes'] / mib:.1f} | {m['memory.prediction_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()

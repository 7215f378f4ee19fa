"""Per-step training metrics: a CSV table that is also logged to the active MLflow run as metric history."""

from __future__ import annotations

import math
import time
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from grpo_pipeline.io.report_datasets import CSVTableDataset

STEP_COLUMN = "step"
# MLflow accepts at most 1000 metrics per log_batch call.
_BATCH_SIZE = 1000


class MlflowStepMetricsDataset(CSVTableDataset):
    """A frame with a ``step`` column and one column per metric.

    Saving writes the CSV atomically and, when an MLflow run is active (kedro-mlflow opens one per
    ``kedro run``), logs every value as a point of that metric's history. ``log_batch`` keeps this to a
    few calls, where one ``log_metric`` per value would cost seconds on a SQLite store.
    """

    def __init__(self, filepath: str, prefix: str = "", metadata: dict[str, Any] | None = None) -> None:
        super().__init__(filepath=filepath, metadata=metadata)
        self._prefix = prefix

    def save(self, data: pd.DataFrame) -> None:
        if STEP_COLUMN not in data.columns:
            raise ValueError(f"Training metrics need a '{STEP_COLUMN}' column; got {list(data.columns)}")
        super().save(data)
        run = mlflow.active_run()
        if run is not None:
            log_metric_history(run.info.run_id, data, prefix=self._prefix)


def log_metric_history(run_id: str, frame: pd.DataFrame, prefix: str = "") -> None:
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(key=f"{prefix}{column}", value=float(value), timestamp=timestamp, step=int(step))
        for column in frame.columns
        if column != STEP_COLUMN and pd.api.types.is_numeric_dtype(frame[column])
        for step, value in zip(frame[STEP_COLUMN], frame[column], strict=True)
        if value is not None and not math.isnan(float(value))
    ]
    client = MlflowClient()
    for start in range(0, len(metrics), _BATCH_SIZE):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH_SIZE], synchronous=True)

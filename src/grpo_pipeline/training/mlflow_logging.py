"""Per-step training metrics streamed to the active MLflow run while training runs.

Streaming (rather than logging once at the end) shows live curves and keeps the history of a run
that crashes, which a resumed run links back to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

# MLflow accepts at most 1000 metrics per log_batch call.
_BATCH_SIZE = 1000


def metrics_of(entries: Iterable[dict[str, Any]]) -> list[Metric]:
    """MLflow metrics from trainer log entries that carry a ``step`` and numeric values."""
    timestamp = int(time.time() * 1000)
    return [
        Metric(key=key, value=float(value), timestamp=timestamp, step=int(entry["step"]))
        for entry in entries
        for key, value in entry.items()
        if key not in ("step", "epoch") and isinstance(value, int | float) and math.isfinite(float(value))
    ]


def log_metrics(run_id: str, metrics: list[Metric]) -> None:
    # log_batch: one call per logging step instead of one per value, which costs seconds on SQLite.
    client = MlflowClient()
    for start in range(0, len(metrics), _BATCH_SIZE):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH_SIZE], synchronous=True)


class MlflowStepMetricsCallback(TrainerCallback):
    """Logs each GRPO logging step (reward, reward_std, per-reward means, loss, kl, ...) to MLflow.

    Steps are buffered and written every ``flush_seconds``, at each checkpoint save and at the end:
    one SQLite transaction per logged step would cost more than a tiny model's training step. A crash
    loses at most ``flush_seconds`` of history, which the resumed run restores from its checkpoint.
    """

    def __init__(self, flush_seconds: float = 5.0) -> None:
        run = mlflow.active_run()
        self.run_id = run.info.run_id if run else None
        self.flush_seconds = flush_seconds
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        if self.run_id and self._pending:
            log_metrics(self.run_id, self._pending)
        self._pending = []
        self._last_flush = time.monotonic()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.run_id and state.is_world_process_zero and logs and "reward" in logs:
            self._pending += metrics_of([{**logs, "step": state.global_step}])
            if time.monotonic() - self._last_flush >= self.flush_seconds:
                self.flush()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.flush()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.flush()


def tag_active_run(tags: dict[str, str]) -> None:
    if mlflow.active_run() is not None and tags:
        mlflow.set_tags(tags)


def log_history_to_active_run(log_history: list[dict[str, Any]]) -> None:
    """Log earlier steps (from a checkpoint's trainer state) so a resumed run's history starts at step 1."""
    run = mlflow.active_run()
    if run is not None:
        log_metrics(run.info.run_id, metrics_of(entry for entry in log_history if "reward" in entry))

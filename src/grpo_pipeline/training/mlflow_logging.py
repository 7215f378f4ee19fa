"""Per-step training metrics streamed to an MLflow run while training runs.

Everything here takes the run id explicitly: under ``accelerate launch`` the training processes are not
the Kedro process that opened the run, and only rank 0 writes to it.

Streaming (rather than logging once at the end) shows live curves and keeps the history of a run
that crashes, which a resumed run links back to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from grpo_pipeline.interruption import interruption_of, stop_training_for
from grpo_pipeline.tracking_store import lost_server

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


def tracked_entry(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A trainer log entry as MLflow and the metrics table hold it: a training step as it is, an evaluation with
    TRL's ``eval_`` prefix written ``eval/`` (``eval/reward``, ``eval/rewards/<name>/mean``), anything else (the
    end-of-training summary) None."""
    if "reward" in entry:
        return entry
    if "eval_reward" in entry:
        return {
            ("step" if key == "step" else f"eval/{key.removeprefix('eval_')}"): value
            for key, value in entry.items()
            if key != "epoch"
        }
    return None


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
    A tracking server that stops answering stops training after the next step and a complete checkpoint
    (interruption.py): the rerun resumes from it once the server is back, with the history it holds.
    """

    def __init__(self, run_id: str | None, flush_seconds: float = 5.0) -> None:
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def flush(self, step: int) -> None:
        if self.run_id and self._pending and lost_server() is None:
            try:
                log_metrics(self.run_id, self._pending)
            except MlflowException as error:
                if (interruption := interruption_of(error)) is not None:
                    raise interruption from None
                if (lost := lost_server(error, step)) is None:
                    raise
                stop_training_for(lost)
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
        entry = tracked_entry({**logs, "step": state.global_step}) if logs else None
        if self.run_id and state.is_world_process_zero and entry:
            self._pending += metrics_of([entry])
            if time.monotonic() - self._last_flush >= self.flush_seconds:
                self.flush(state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.flush(state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.flush(state.global_step)


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def tag_run(run_id: str | None, tags: dict[str, str]) -> None:
    if run_id and tags:
        MlflowClient().log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()], synchronous=True)


def log_history(run_id: str | None, history: list[dict[str, Any]]) -> None:
    """Log earlier steps (from a checkpoint's trainer state) so a resumed run's history starts at step 1."""
    if run_id:
        log_metrics(run_id, metrics_of(entry for entry in map(tracked_entry, history) if entry))


def log_fingerprint(run_id: str | None, fingerprint: dict[str, Any], fingerprint_hash: str) -> None:
    """The run fingerprint as ``run_fingerprint.json`` and its hash as the tag ``grpo.fingerprint``."""
    if run_id:
        client = MlflowClient()
        client.log_dict(run_id, fingerprint, "run_fingerprint.json")
        client.set_tag(run_id, "grpo.fingerprint", fingerprint_hash, synchronous=True)


def log_grpo_config(run_id: str | None, config: dict[str, Any]) -> None:
    """The fully resolved ``trl.GRPOConfig`` (TRL's defaults included) as ``grpo_config.json``."""
    if run_id:
        MlflowClient().log_dict(run_id, config, "grpo_config.json")

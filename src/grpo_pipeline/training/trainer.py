"""The project's callbacks around ``trl.GRPOTrainer``, and its LoRA configuration."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOTrainer

from grpo_pipeline.atomic import follow_umask
from grpo_pipeline.interruption import confirm_stop, record_progress, stop_requested
from grpo_pipeline.training.checkpoints import PREFIX_CHECKPOINT_DIR, write_marker

logger = logging.getLogger(__name__)


def wrapped_output_embedding(model: torch.nn.Module) -> str | None:
    """Why GRPOTrainer cannot train ``model``'s adapters as configured, or None: peft wraps its output embedding
    (``trainable_token_indices`` on a model whose input and output embeddings are tied, or ``modules_to_save`` naming
    the LM head), but TRL computes log-probabilities from ``lm_head.weight`` directly, so the wrapper is either never
    trained or fails at the first step. (TRL itself refuses a LoRA adapter on the head.)"""
    from peft.utils.other import AuxiliaryTrainingWrapper  # noqa: PLC0415 (only an adapter model has one)

    head = model.get_output_embeddings()
    if not isinstance(head, AuxiliaryTrainingWrapper):
        return None
    return (
        f"peft wraps the output embedding (the LM head) in a {type(head).__name__}: trainable_token_indices on a "
        "model whose input and output embeddings are tied, or modules_to_save naming the head. GRPOTrainer computes "
        "log-probabilities from lm_head.weight directly, so it cannot train it; leave the head out of the adapter"
    )


@dataclass
class StepTimer(TrainerCallback):
    """The wall time of every optimisation step this process ran."""

    step_seconds: list[float] = field(default_factory=list)
    _step_started: float = 0.0

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.step_seconds.append(time.perf_counter() - self._step_started)


def _log_to_file(state: TrainerState, logs: dict[str, Any] | None) -> None:
    if state.is_world_process_zero and logs:
        logger.debug("step %d: %s", state.global_step, logs)


class QuietProgressCallback(ProgressCallback):
    """One tqdm bar with step, ETA and the latest reward (or loss), instead of the stock bar's printed dict per
    logging step and nested bar per evaluation; each logged dict goes to the log file (DEBUG)."""

    def on_log(self, args: Any, state: TrainerState, control: Any, logs: dict | None = None, **_: Any) -> None:
        _log_to_file(state, logs)
        shown = {name: f"{logs[name]:.4f}" for name in ("loss", "reward") if isinstance((logs or {}).get(name), float)}
        if state.is_world_process_zero and self.training_bar is not None and shown:
            self.training_bar.set_postfix(shown)

    def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
        pass  # no bar per evaluation: its results reach the log file and MLflow


class LogFileCallback(TrainerCallback):
    """In place of ``disable_tqdm``'s printed dict per logging step: each goes to the log file (DEBUG)."""

    def on_log(self, args: Any, state: TrainerState, control: Any, logs: dict | None = None, **_: Any) -> None:
        _log_to_file(state, logs)


def use_quiet_progress_bar(trainer: Trainer) -> None:
    """Swap the stock progress bar and printer (which print every log dict) for :class:`QuietProgressCallback` and
    :class:`LogFileCallback`."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgressCallback)
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(LogFileCallback)


def close_progress_bars(trainer: GRPOTrainer) -> None:
    """Close the progress bar of a training that raised: left open, it prints itself again when the process exits,
    after the run's last message."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
            callback.training_bar.close()
            callback.training_bar = None


def peak_memory_mb() -> dict[str, float | None]:
    """Peak resident memory of this process and, when CUDA is in use, peak allocated GPU memory."""
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": rss_mb, "peak_gpu_mb": gpu_mb}


class CheckpointCompletionCallback(TrainerCallback):
    """Marks each ``checkpoint-N`` complete once saved, recording the step, the MLflow run and the run fingerprint."""

    def __init__(self, mlflow_run_id: str | None, fingerprint: dict[str, Any] | None = None) -> None:
        self.mlflow_run_id = mlflow_run_id
        self.fingerprint = fingerprint

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Only the main process: on other machines transformers 5 leaves checkpoint-N without weights.
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            follow_umask(folder)
            write_marker(folder, state.global_step, self.mlflow_run_id, self.fingerprint)


class StopOnSignalCallback(TrainerCallback):
    """Records the step reached; when a signal asked for a stop (interruption.py), has the trainer save a checkpoint
    after this step and stop. Every process of a distributed run stops at the same step: ``share`` gives the
    largest request over the processes (None: one process)."""

    def __init__(self, share: Callable[[int], int] | None = None) -> None:
        self._share = share

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        record_progress(state.global_step, state.max_steps)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        record_progress(state.global_step, state.max_steps)
        requested = stop_requested() or 0
        if self._share is not None:
            requested = self._share(requested)
        if requested and state.global_step < state.max_steps:
            confirm_stop(requested)
            control.should_save = True
            control.should_training_stop = True

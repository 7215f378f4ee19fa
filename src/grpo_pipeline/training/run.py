"""One GRPO training run: ``trl.GRPOTrainer`` with resume, MLflow streaming, timing and LoRA."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.config.schema import invalid_parameters
from grpo_pipeline.evaluation import sampling_settings
from grpo_pipeline.fingerprinted import differences, fingerprint_hash
from grpo_pipeline.interruption import graceful_stop_window, raise_if_stopped, stop_requested
from grpo_pipeline.models.checkpoint import HFCheckpoint
from grpo_pipeline.models.loading import load_tokenizer, loading_choices
from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.rewards.models import load_reward_model
from grpo_pipeline.training.checkpoints import (
    is_auto_resume,
    mark_finished,
    read_marker,
    resolve_resume_checkpoint,
    start_fresh,
    unwritten_checkpoint_error,
)
from grpo_pipeline.training.fingerprint import check_resume, run_fingerprint
from grpo_pipeline.training.mlflow_logging import (
    MlflowStepMetricsCallback,
    log_fingerprint,
    log_grpo_config,
    log_history,
    tag_run,
    tracked_entry,
)
from grpo_pipeline.training.sources import trainer_sources
from grpo_pipeline.training.trainer import (
    CheckpointCompletionCallback,
    StepTimer,
    StopOnSignalCallback,
    close_progress_bars,
    peak_memory_mb,
    use_quiet_progress_bar,
    wrapped_output_embedding,
)
from grpo_pipeline.training.trl_internals import PhaseTiming, TimedGRPOTrainer
from grpo_pipeline.training.vllm_preflight import check_vllm_generation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRequest:
    """One training run's inputs: the formatted prompts, the model training starts from, the run configuration."""

    train_dataset: pd.DataFrame
    base_model_path: str
    config: RunConfig
    eval_dataset: pd.DataFrame | None = None  # scored during training when training.eval_strategy is not "no"

    @property
    def export_merged(self) -> bool:
        """Whether the checkpoint is to hold base+adapter merged as well (LoRA with ``merge_and_export``)."""
        peft = self.config.params.peft
        return bool(peft and peft.merge_and_export)

    def fingerprint(self) -> dict[str, Any]:
        """What decides the weights this run produces (see training/fingerprint.py)."""
        return run_fingerprint(self.config, _trainer_columns(self.train_dataset))

    def to_json(self, train_file: Path) -> dict[str, Any]:
        """The request as JSON, its prompts written to ``train_file`` (and the eval prompts beside it, JSON Lines):
        for another process."""
        eval_file = train_file.with_name(f"eval_{train_file.name}")
        self.train_dataset.to_json(train_file, orient="records", lines=True, force_ascii=False)
        if self.eval_dataset is not None:
            self.eval_dataset.to_json(eval_file, orient="records", lines=True, force_ascii=False)
        return {
            "train_dataset": str(train_file),
            "eval_dataset": str(eval_file) if self.eval_dataset is not None else None,
            "base_model_path": self.base_model_path,
            "config": self.config.to_json(),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrainingRequest:
        def read(path: str) -> pd.DataFrame:
            return pd.read_json(path, orient="records", lines=True, dtype=False)

        return cls(
            train_dataset=read(payload["train_dataset"]),
            base_model_path=payload["base_model_path"],
            config=RunConfig.from_json(payload["config"]),
            eval_dataset=read(payload["eval_dataset"]) if payload["eval_dataset"] else None,
        )


@dataclass
class TrainingResult:
    """What a training run hands on, whether it trained in this process or under ``accelerate launch``:
    the checkpoint (not yet saved), per-step metrics, timings and sample completions."""

    checkpoint: HFCheckpoint
    metrics: pd.DataFrame
    timings: dict[str, Any]
    completion_samples: list[dict[str, Any]]


@dataclass
class GrpoRun:
    """The live end of one training process: the trainer (with the trained model), its tokenizer and records."""

    trainer: TimedGRPOTrainer
    tokenizer: PreTrainedTokenizerBase
    metrics: pd.DataFrame
    timings: dict[str, Any]
    trainer_state: dict[str, Any]

    def result(self, export_merged: bool) -> TrainingResult:
        checkpoint = HFCheckpoint(
            model=self.trainer.model,
            tokenizer=self.tokenizer,
            trainer_state=self.trainer_state,
            export_merged=export_merged,
        )
        return TrainingResult(checkpoint, self.metrics, self.timings, self.trainer.completion_samples)


def _trainer_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns GRPOTrainer sees: the prompt and what the rewards read."""
    return frame.drop(columns=list(FORMATTED_COLUMNS), errors="ignore")


def _as_dataset(frame: pd.DataFrame) -> Dataset:
    return Dataset.from_pandas(_trainer_columns(frame), preserve_index=False)


def step_metrics(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per logged training step, with the evaluation of that step (``eval/...`` columns) when there was one."""
    entries = [entry for entry in map(tracked_entry, log_history) if entry]
    train = pd.DataFrame([entry for entry in entries if "reward" in entry])
    train = train[["step", *[column for column in train.columns if column != "step"]]]
    evaluations = [entry for entry in entries if "eval/reward" in entry]
    if not evaluations:
        return train
    return train.merge(pd.DataFrame(evaluations), on="step", how="outer").sort_values("step", ignore_index=True)


def build_trainer(
    request: TrainingRequest, mlflow_run_id: str | None, fingerprint: dict[str, Any]
) -> tuple[TimedGRPOTrainer, StepTimer]:
    """``GRPOTrainer`` for ``request``, with the project's callbacks; checks vLLM before loading."""
    run_config, params = request.config, request.config.params
    config = run_config.build_grpo_config()
    check_vllm_generation(config, request.base_model_path, run_config.variant)
    if params.run.torch_num_threads:
        torch.set_num_threads(params.run.torch_num_threads)
    evaluates = config.eval_strategy != "no"
    if evaluates and (request.eval_dataset is None or request.eval_dataset.empty):
        raise invalid_parameters(
            [
                f"parameter '{run_config.where('training.eval_strategy')}' = {config.eval_strategy!r}, but there are "
                "no held-out prompts to score; set data.eval_size, or 'no'"
            ]
        )
    step_timer = StepTimer()
    trainer = TimedGRPOTrainer(
        model=request.base_model_path,  # TRL loads it with config.model_init_kwargs
        args=config,
        train_dataset=_as_dataset(request.train_dataset),
        eval_dataset=_as_dataset(request.eval_dataset) if evaluates else None,
        processing_class=load_tokenizer(request.base_model_path, params.model.revision, params.model.trust_remote_code),
        peft_config=run_config.build_lora_config(),
        **trainer_sources(run_config, [load_reward_model(model) for model in run_config.rewards.models]),
        callbacks=[
            step_timer,
            # A checkpoint is marked complete once written, before anything reaches the tracking server.
            CheckpointCompletionCallback(mlflow_run_id, fingerprint),
            MlflowStepMetricsCallback(mlflow_run_id),
        ],
        samples_every=params.run.completion_samples_every,
        samples_per_step=params.run.completion_samples_per_step,
    )
    if params.peft is not None and (problem := wrapped_output_embedding(trainer.model)):
        raise invalid_parameters([f"parameter '{run_config.where('peft')}': {problem}"])
    use_quiet_progress_bar(trainer)
    # Added once the trainer exists: a distributed run shares a stop request over its processes.
    trainer.add_callback(StopOnSignalCallback(_shared_over_processes(trainer)))
    return trainer, step_timer


def _shared_over_processes(trainer: TimedGRPOTrainer) -> Callable[[int], int] | None:
    """The largest of a number over the run's processes (every process stops at the step one was asked to)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return None

    def largest(value: int) -> int:
        gathered = accelerator.gather(torch.tensor([value], device=accelerator.device))
        return int(gathered.max().item())

    return largest


def checked_resume_checkpoint(
    request: TrainingRequest, fingerprint: dict[str, Any], mlflow_run_id: str | None
) -> Path | None:
    """The checkpoint to resume from: with ``auto`` only one of this very run (same fingerprint); a named one
    whatever it is, with the differences logged and tagged on the MLflow run."""
    setting = request.config.params.run.resume_from_checkpoint
    resume_from = resolve_resume_checkpoint(setting, request.config.grpo_config.output_dir)
    if resume_from is None:
        return None
    recorded = read_marker(resume_from).get("fingerprint")
    if is_auto_resume(setting):
        changed = check_resume(resume_from, recorded, fingerprint, request.config.where("run"))
    else:
        changed = differences(recorded or {}, fingerprint)
    if changed:
        logger.warning("Resuming %s, which a run with other settings wrote: %s", resume_from, "; ".join(changed))
        tag_run(mlflow_run_id, {"grpo.resume_differences": "; ".join(changed)[:5000]})
    return resume_from


def writes_checkpoints(trainer: TimedGRPOTrainer) -> bool:
    """Whether this process writes the trainer's output folder: the main process, or with ``save_on_each_node``
    (more than one machine, each with its own disk) each machine's first process."""
    accelerator = trainer.accelerator
    return accelerator.is_local_main_process if trainer.args.save_on_each_node else accelerator.is_main_process


def prepare_resume(trainer: TimedGRPOTrainer, resume_from: Path | None, mlflow_run_id: str | None) -> int:
    """Clear old recovery checkpoints for a fresh run, or link the MLflow run to the crashed one; the start step."""
    if resume_from is None:
        if writes_checkpoints(trainer):
            start_fresh(trainer.args.output_dir)
        trainer.accelerator.wait_for_everyone()
        return 0
    # Read before training: checkpoint rotation (save_total_limit) may delete the folder during the run.
    marker = read_marker(resume_from)
    logger.info("Resuming training from %s (global step %d)", resume_from, marker["global_step"])
    tag_run(
        mlflow_run_id,
        {
            "grpo.resumed_from_checkpoint": str(resume_from),
            "grpo.resumed_from_step": str(marker["global_step"]),
            "grpo.resumed_from_mlflow_run": str(marker["mlflow_run_id"]),
        },
    )
    log_history(mlflow_run_id, json.loads((resume_from / "trainer_state.json").read_text())["log_history"])
    return int(marker["global_step"])


PHASES = ("generation", "reward_scoring", "optimisation", "evaluation", "other")


def phase_shares(timing: PhaseTiming, step_seconds: float, wall_seconds: float) -> dict[str, float]:
    """Each phase's share of the training's wall time, summing to 1: generation and reward scoring of the training
    batches, optimisation (the rest of each step: log-probabilities, loss, backward, optimizer), evaluation, and
    other (between steps: checkpoints, logging)."""
    seconds = {
        "generation": timing.generation_seconds,
        "reward_scoring": timing.reward_seconds,
        "optimisation": max(step_seconds - timing.generation_seconds - timing.reward_seconds, 0.0),
        "evaluation": timing.evaluation_seconds,
        "other": max(wall_seconds - step_seconds - timing.evaluation_seconds, 0.0),
    }
    total = sum(seconds.values())
    return {phase: value / total if total else 0.0 for phase, value in seconds.items()}


def run_timings(
    trainer: TimedGRPOTrainer, step_timer: StepTimer, wall_seconds: float, resumed_from_step: int
) -> dict[str, Any]:
    """Wall time, per-step spread, the share of each phase, throughput, parameters and memory of the run."""
    # Zero steps is possible: a run killed after its final checkpoint but before it was marked finished.
    step_seconds = np.array(step_timer.step_seconds or [0.0])
    timing = trainer.phase_timing
    return {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": resumed_from_step,
        "steps_this_run": len(step_timer.step_seconds),
        "world_size": trainer.accelerator.num_processes,
        "batch_size": trainer.args.per_device_train_batch_size,
        "num_generations": trainer.args.num_generations,
        "train_wall_seconds": wall_seconds,
        "step_seconds_min": float(step_seconds.min()),
        "step_seconds_median": float(np.median(step_seconds)),
        "step_seconds_max": float(step_seconds.max()),
        "generation_seconds": timing.generation_seconds,
        "shares": phase_shares(timing, float(step_seconds.sum()), wall_seconds),
        "generated_tokens": timing.completion_tokens,
        "generated_tokens_per_second": (
            timing.completion_tokens / timing.generation_seconds if timing.generation_seconds else 0.0
        ),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.accelerator.device),
        **peak_memory_mb(),
    }


def train(request: TrainingRequest, mlflow_run_id: str | None = None) -> GrpoRun:
    """Train with ``trl.GRPOTrainer`` in this process (one rank of it under ``accelerate launch``).

    With ``request.peft`` TRL wraps the model in LoRA adapters. With ``resume_from_checkpoint: auto`` a
    run that crashed continues from its newest complete ``checkpoint-N``: the trainer restores
    weights, optimizer and step, and the MLflow run ``mlflow_run_id`` is tagged with the crashed one and
    given its history, so it holds the whole curve. Only the main process writes markers and MLflow.
    """
    fingerprint = request.fingerprint()
    resume_from = checked_resume_checkpoint(request, fingerprint, mlflow_run_id)
    trainer, step_timer = build_trainer(request, mlflow_run_id, fingerprint)
    choices = loading_choices(trainer.model)
    logger.info("Model loaded as: %s", ", ".join(f"{key}={value}" for key, value in choices.items()))
    if trainer.accelerator.is_main_process:
        tag_run(mlflow_run_id, {f"grpo.model.{key}": value for key, value in choices.items()})
    tag_run(mlflow_run_id, {f"seed_config.{line.split(':')[0]}": line for line in request.config.seed_config_mapping})
    if trainer.accelerator.is_main_process:
        log_fingerprint(mlflow_run_id, fingerprint, fingerprint_hash(fingerprint))
        log_grpo_config(mlflow_run_id, trainer.args.to_dict())
    resumed_from_step = prepare_resume(trainer, resume_from, mlflow_run_id)

    started = time.perf_counter()
    try:
        with graceful_stop_window():
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except Exception as error:
        if unwritten := unwritten_checkpoint_error(trainer.args.output_dir, trainer.state.global_step, error):
            raise unwritten from error
        raise
    finally:
        close_progress_bars(trainer)
    wall_seconds = time.perf_counter() - started
    completed = trainer.state.global_step >= trainer.state.max_steps or not stop_requested()
    if completed and writes_checkpoints(trainer):
        mark_finished(trainer.args.output_dir, trainer.state.global_step)
    # SIGTERM or SIGHUP (or a lost tracking server) during training stopped it after a complete checkpoint: the run
    # ends here, as interrupted (or failed).
    raise_if_stopped()
    if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        best = {
            "grpo.best_checkpoint": trainer.state.best_model_checkpoint,
            "grpo.best_metric": trainer.state.best_metric,
        }
        logger.info("The trained model is the best checkpoint by %s: %s", trainer.args.metric_for_best_model, best)
        if trainer.accelerator.is_main_process:
            tag_run(mlflow_run_id, best)

    metrics = step_metrics(trainer.state.log_history)
    state = json.loads(json.dumps(dataclasses.asdict(trainer.state), default=str))
    # TrainerState does not say how many processes trained; a reader of the checkpoint wants to know.
    state["world_size"] = trainer.accelerator.num_processes
    state["distributed_type"] = str(trainer.accelerator.distributed_type.value)
    state["run_fingerprint"] = fingerprint
    state["mlflow_run_id"] = mlflow_run_id  # which run wrote these weights
    state["sampling"] = sampling_settings(trainer.args)  # validation samples as training did
    # How the weights are loaded (quantization, attention): validation reloads base and checkpoint the same way.
    state["model_init_kwargs"] = request.config.model_init_kwargs
    timings = run_timings(trainer, step_timer, wall_seconds, resumed_from_step)
    return GrpoRun(trainer, trainer.processing_class, metrics, timings, state)

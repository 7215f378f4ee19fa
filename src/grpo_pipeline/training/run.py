"""One GRPO training run: ``trl.GRPOTrainer`` with resume, MLflow streaming, timing and LoRA."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from grpo_pipeline.config.schema import ModelParams, PeftParams, RewardParams, TrainingParams
from grpo_pipeline.io.checkpoint_dataset import HFCheckpoint
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer
from grpo_pipeline.rewards import get_reward_functions
from grpo_pipeline.training.checkpoints import (
    CheckpointCompletionCallback,
    mark_finished,
    read_marker,
    resolve_resume_checkpoint,
    start_fresh,
)
from grpo_pipeline.training.mlflow_logging import MlflowStepMetricsCallback, log_history, tag_run
from grpo_pipeline.training.rollouts import load_rollout_func
from grpo_pipeline.training.trainer import (
    StepTimer,
    TimedGRPOTrainer,
    build_grpo_config,
    build_lora_config,
    peak_memory_mb,
    use_reward_progress_bar,
)
from grpo_pipeline.training.vllm_preflight import check_vllm_generation

logger = logging.getLogger(__name__)


def _trainer_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns GRPOTrainer sees: the prompt and what the rewards read."""
    return frame.drop(columns=["prompt_text", "prompt_tokens"], errors="ignore")


@dataclass(frozen=True)
class TrainingRequest:
    """One training run's inputs: the formatted prompts, the base model and the typed parameters."""

    train_dataset: pd.DataFrame
    base_model_path: str
    model: ModelParams
    peft: PeftParams | None
    training: TrainingParams
    reward: RewardParams
    seed: int
    seed_config_mapping: list[str] = field(default_factory=list)


@dataclass
class GrpoRun:
    """What one training run leaves: the trainer (with the trained model), its tokenizer and its records."""

    trainer: TimedGRPOTrainer
    tokenizer: PreTrainedTokenizerBase
    metrics: pd.DataFrame
    timings: dict[str, Any]
    trainer_state: dict[str, Any]

    @property
    def completion_samples(self) -> list[dict[str, Any]]:
        return self.trainer.completion_samples


def train(request: TrainingRequest, mlflow_run_id: str | None = None) -> GrpoRun:
    """Train with ``trl.GRPOTrainer`` in this process (one rank of it under ``accelerate launch``).

    With ``request.peft`` TRL wraps the model in LoRA adapters. With ``resume_from_checkpoint: auto`` a
    run that crashed continues from its newest complete ``checkpoint-N``: the trainer restores
    weights, optimizer and step, and the MLflow run ``mlflow_run_id`` is tagged with the crashed one and
    given its history, so it holds the whole curve. Only the main process writes markers and MLflow.
    """
    base_model_path, model_params, peft_params = request.base_model_path, request.model, request.peft
    training_params, reward_params = request.training, request.reward
    reward_functions = get_reward_functions(reward_params.functions)
    config = build_grpo_config(training_params, reward_params, request.seed)
    check_vllm_generation(training_params, base_model_path)
    resume_from = resolve_resume_checkpoint(training_params.resume_from_checkpoint, config.output_dir)
    if training_params.torch_num_threads:
        torch.set_num_threads(training_params.torch_num_threads)
    # TRL flags rollout_func as experimental on every run; the project pins TRL 1.16's contract instead.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    tokenizer = load_tokenizer(base_model_path, model_params.revision, model_params.trust_remote_code)
    policy = load_causal_lm(base_model_path, model_params.revision, model_params.dtype, model_params.trust_remote_code)
    step_timer = StepTimer()
    trainer = TimedGRPOTrainer(
        model=policy,
        reward_funcs=reward_functions,
        args=config,
        train_dataset=Dataset.from_pandas(_trainer_columns(request.train_dataset), preserve_index=False),
        processing_class=tokenizer,
        peft_config=build_lora_config(peft_params) if peft_params else None,
        rollout_func=load_rollout_func(training_params.rollout_func) if training_params.rollout_func else None,
        callbacks=[step_timer, MlflowStepMetricsCallback(mlflow_run_id), CheckpointCompletionCallback(mlflow_run_id)],
        samples_every=training_params.completion_samples_every,
        samples_per_step=training_params.completion_samples_per_step,
    )
    use_reward_progress_bar(trainer)
    is_main = trainer.accelerator.is_main_process
    tag_run(mlflow_run_id, {f"seed_config.{line.split(':')[0]}": line for line in request.seed_config_mapping})
    # Read before training: checkpoint rotation (save_total_limit) may delete the folder during the run.
    marker = read_marker(resume_from) if resume_from else {"global_step": 0}
    if resume_from is None:
        if is_main:
            start_fresh(config.output_dir)
        trainer.accelerator.wait_for_everyone()
    else:
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

    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall_seconds = time.perf_counter() - started
    if is_main:
        mark_finished(config.output_dir, trainer.state.global_step)

    metrics = pd.DataFrame([entry for entry in trainer.state.log_history if "reward" in entry])
    metrics = metrics[["step", *[column for column in metrics.columns if column != "step"]]]
    # Zero steps is possible: a run killed after its final checkpoint but before it was marked finished.
    step_seconds = np.array(step_timer.step_seconds or [0.0])
    timing = trainer.generation_timing
    world_size = trainer.accelerator.num_processes
    timings = {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": marker["global_step"],
        "steps_this_run": len(step_timer.step_seconds),
        "world_size": world_size,
        "train_wall_seconds": wall_seconds,
        "step_seconds_min": float(step_seconds.min()),
        "step_seconds_median": float(np.median(step_seconds)),
        "step_seconds_max": float(step_seconds.max()),
        "generation_seconds": timing.seconds,
        "generation_share": timing.seconds / step_seconds.sum() if step_seconds.sum() else 0.0,
        "generated_tokens": timing.completion_tokens,
        "generated_tokens_per_second": timing.completion_tokens / timing.seconds if timing.seconds else 0.0,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": str(trainer.accelerator.device),
        **peak_memory_mb(),
    }
    state = json.loads(json.dumps(dataclasses.asdict(trainer.state), default=str))
    # TrainerState does not say how many processes trained; a reader of the checkpoint wants to know.
    state["world_size"] = world_size
    state["distributed_type"] = str(trainer.accelerator.distributed_type.value)
    return GrpoRun(trainer, tokenizer, metrics, timings, state)


def run_grpo(
    request: TrainingRequest, mlflow_run_id: str | None = None
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Train in this process; return the checkpoint (not yet saved), per-step metrics, timings and samples."""
    run = train(request, mlflow_run_id)
    checkpoint = HFCheckpoint(
        model=run.trainer.model,
        tokenizer=run.tokenizer,
        trainer_state=run.trainer_state,
        export_merged=bool(request.peft and request.peft.merge_and_export),
    )
    return checkpoint, run.metrics, run.timings, run.completion_samples

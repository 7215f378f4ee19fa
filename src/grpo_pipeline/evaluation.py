"""Generation and reward scoring of a model on held-out prompts, for checkpoint validation, through the trainer's own
path: a ``GRPOTrainer`` built as training builds it (the run's GRPOConfig: transformers or vLLM, ``rollout_func``,
tools and environments, reward functions and reward models) generates and scores each batch as a training step
does, greedy or sampled as GRPO samples."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import TrainerState

from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.training.sources import trainer_sources
from grpo_pipeline.training.trl_internals import ScoredBatch, ScoringGRPOTrainer

# How GRPOTrainer samples completions (without vLLM): these GRPOConfig fields plus its generation_kwargs.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
# Prompts generated together (all their samples at once) by transformers; vLLM schedules every prompt itself.
PROMPTS_PER_CALL = 32


def sampling_settings(config: Any) -> dict[str, Any]:
    """How a ``trl.GRPOConfig`` samples completions, for the records."""
    extra = {key: value for key, value in (config.generation_kwargs or {}).items() if key != "max_new_tokens"}
    return {name: getattr(config, name) for name in SAMPLING_FIELDS} | extra


def validation_config(run_config: RunConfig, max_new_tokens: int, output_dir: str) -> Any:
    """The run's ``trl.GRPOConfig`` for generating and scoring only: its generation and rewards as they are, the
    completion budget ``max_new_tokens``, and nothing that only training needs (no reference model, no
    checkpoints, no trackers)."""
    from grpo_pipeline.config.trl_config import build_trl_config  # noqa: PLC0415 (TRL takes seconds to import)

    kwargs = {
        key: value
        for key, value in run_config.grpo_config_kwargs().items()
        if key not in ("gradient_checkpointing", "activation_checkpointing")
    } | {
        "output_dir": output_dir,
        "max_completion_length": max_new_tokens,
        "model_init_kwargs": None,  # the model is loaded already, as the run loads it
        "beta": 0.0,
        "vllm_importance_sampling_correction": False,
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "activation_checkpointing": False,
        "report_to": "none",
    }
    return build_trl_config("GRPOConfig", kwargs, run_config.where("training"))


@dataclass(frozen=True)
class Completions:
    """What a model generated for a set of prompts (a prompt's samples together), as the rewards saw it: the
    completions (text, or messages with tool turns), their token ids, each reward's values (``rewards[completion,
    reward]``, NaN: not applicable), tool use (None without tools), and the prompt and completion ids of the first
    generation batch (what :meth:`Evaluator.finite` reads)."""

    completions: list[Any]
    ids: list[list[int]]
    rewards: np.ndarray
    tool_use: dict[str, float] | None
    first_sequences: list[list[int]]


class Evaluator:
    """One model generating and scoring held-out prompts through a :class:`ScoringGRPOTrainer` built for it from the
    run's configuration; rewards get the checkpoint's ``trainer_state`` as in training."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        frame: pd.DataFrame,
        run_config: RunConfig,
        max_new_tokens: int,
        reward_models: list[tuple[Any, Any]],
        trainer_state: TrainerState,
    ) -> None:
        self.rows = frame.drop(columns=list(FORMATTED_COLUMNS), errors="ignore").to_dict(orient="records")
        self._output_dir = tempfile.TemporaryDirectory(prefix="grpo-validation-")
        self.trainer = ScoringGRPOTrainer(
            model=model,
            args=validation_config(run_config, max_new_tokens, self._output_dir.name),
            train_dataset=Dataset.from_list(self.rows),
            processing_class=tokenizer,
            **trainer_sources(run_config, reward_models),
        )
        self.trainer.state = trainer_state
        self.tools = run_config.tools.active
        if len(self.trainer.reward_func_names) != len(run_config.rewards.names):
            raise RuntimeError(
                f"GRPOTrainer scores with {self.trainer.reward_func_names}, the run names {run_config.rewards.names}: "
                "validation cannot tell which reward is which (see rewards/__init__.py: resolve_rewards)"
            )

    def close(self) -> None:
        self.trainer.release()
        del self.trainer
        self._output_dir.cleanup()

    def complete(self, greedy: bool, samples: int = 1, count: int | None = None) -> Completions:
        """``samples`` completions of each of the first ``count`` prompts (all: None), greedy or sampled."""
        rows = self.rows[:count]
        per_call = len(rows) if self.trainer.use_vllm else PROMPTS_PER_CALL
        batches: list[ScoredBatch] = [
            self.trainer.generate_and_score(rows[start : start + per_call], samples, greedy)
            for start in range(0, len(rows), per_call)
        ]
        completions = [completion for batch in batches for completion in batch.completions]
        ids = [ids for batch in batches for ids in batch.completion_ids]
        tool_use = tool_use_over(batches) if self.tools else None
        rewards = np.concatenate([batch.rewards for batch in batches])
        first = batches[0]
        sequences = [p + c for p, c in zip(first.prompt_ids, first.completion_ids, strict=True)]
        return Completions(completions, ids, rewards, tool_use, sequences)

    def finite(self, completions: Completions) -> bool:
        """Whether the model's weights and its logits for the first of ``completions`` are all finite."""
        return finite_logits(self.trainer.model, completions.first_sequences)


def tool_use_over(batches: list[ScoredBatch]) -> dict[str, float]:
    """The batches' tool use together, from the trainer's per-batch metrics: calls per completion, the share of
    calls that failed, the share of completions with a call, assistant turns per completion."""
    sizes = np.array([len(batch.completions) for batch in batches], dtype=float)

    def per_batch(name: str) -> np.ndarray:
        return np.array([batch.tool_metrics.get(name, 0.0) for batch in batches])

    calls = per_batch("tools/call_frequency") * sizes
    return {
        "tool_calls_per_completion": float(calls.sum() / sizes.sum()),
        "tool_failure_rate": float((per_batch("tools/failure_frequency") * calls).sum() / calls.sum())
        if calls.sum()
        else 0.0,
        "tool_use_share": float((per_batch("tools/use_share") * sizes).sum() / sizes.sum()),
        "turns_per_completion": float((per_batch("tools/turns") * sizes).sum() / sizes.sum()),
    }


# The sequences whose logits are checked: enough to see NaN/inf weights or an overflow, cheap beside generating.
FINITE_CHECK_SEQUENCES = 4


@torch.no_grad()
def finite_logits(model: torch.nn.Module, sequences: list[list[int]]) -> bool:
    """Whether ``model``'s weights and its logits for the first ``sequences`` (prompts with their completions) are
    all finite: a checkpoint with NaN/inf weights, or one that overflows its dtype, generates without failing."""
    if not all(bool(torch.isfinite(parameter).all()) for parameter in model.parameters()):
        return False
    for ids in sequences[:FINITE_CHECK_SEQUENCES]:
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits
        if not bool(torch.isfinite(logits).all()):
            return False
    return True


def summarise(rewards: np.ndarray, names: list[str], weights: list[float]) -> dict[str, Any]:
    """Each reward and their weighted sum, as TRL sums them: a reward's NaN (not applicable) is left out of its
    mean and of the sum; a completion no reward applies to is left out of the total's mean."""
    applicable = ~np.isnan(rewards)
    total = np.where(applicable.any(axis=1), np.nansum(rewards * np.asarray(weights), axis=1), np.nan)
    return {
        "mean_reward": _nanmean(total),
        "rewards": {name: _nanmean(rewards[:, index]) for index, name in enumerate(names)},
        "skipped": {name: int(np.isnan(rewards[:, index]).sum()) for index, name in enumerate(names)},
        "per_prompt": [None if np.isnan(value) else float(value) for value in total],
        "per_completion": {name: rewards[:, index] for index, name in enumerate(names)},
    }


def trainer_state_of(recorded: dict[str, Any]) -> TrainerState:
    """A checkpoint's trainer state as TRL hands it to rewards (``trainer_state``): its step, epoch and history."""
    known = {field.name for field in dataclasses.fields(TrainerState)}
    return TrainerState(**{key: value for key, value in recorded.items() if key in known})


def _nanmean(values: np.ndarray) -> float | None:
    """The mean of the values a reward gave (NaN: not applicable), None when it applied to none."""
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else None

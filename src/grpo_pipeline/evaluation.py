"""Generation (greedy, or sampled as GRPO samples) and reward scoring of a model on held-out prompts, for
checkpoint validation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch
from trl.data_utils import is_conversational

from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.rewards import RewardFunction, RewardSet
from grpo_pipeline.rewards.guard import guarded, is_async_reward
from grpo_pipeline.rewards.models import reward_model_scorers

# How GRPOTrainer samples completions (without vLLM): these GRPOConfig fields plus its generation_kwargs.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def sampling_settings(config: Any | None = None) -> dict[str, Any]:
    """How a ``trl.GRPOConfig`` samples completions; TRL's defaults without one."""
    if config is None:
        from trl import GRPOConfig  # noqa: PLC0415 (only an old checkpoint, which records none, needs the defaults)

        defaults = {field.name: field.default for field in dataclasses.fields(GRPOConfig)}
        return {name: defaults[name] for name in SAMPLING_FIELDS}
    extra = {key: value for key, value in (config.generation_kwargs or {}).items() if key != "max_new_tokens"}
    return {name: getattr(config, name) for name in SAMPLING_FIELDS} | extra


@torch.no_grad()
def generate(
    policy: torch.nn.Module,
    tokenizer: Any,
    prompt_texts: list[str],
    max_new_tokens: int,
    sampling: dict[str, Any] | None = None,
    samples: int = 1,
    batch_size: int = 32,
) -> tuple[list[list[int]], bool]:
    """Completion token ids (up to EOS) for templated prompts, greedy or with ``sampling`` (``samples`` per prompt,
    a prompt's together), and whether every logit was finite."""
    policy.eval()
    tokenizer.padding_side = "left"
    completions: list[list[int]] = []
    finite = True
    for start in range(0, len(prompt_texts), batch_size):
        batch = tokenizer(
            prompt_texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(policy.device)
        output = policy.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            **({"do_sample": True, "num_return_sequences": samples, **sampling} if sampling else {"do_sample": False}),
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
        )
        finite = finite and all(bool(torch.isfinite(step).all()) for step in output.logits)
        for generated in output.sequences[:, batch["input_ids"].shape[1] :].tolist():
            end = generated.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in generated else len(generated)
            completions.append([token for token in generated[:end] if token != tokenizer.pad_token_id])
    return completions, finite


def decode(tokenizer: Any, completions: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
    """Completion text as ``GRPOTrainer`` hands it to the rewards (special tokens skipped), so validation scores
    what training scored; ``skip_special_tokens=False`` shows what the model really generated."""
    return tokenizer.batch_decode(completions, skip_special_tokens=skip_special_tokens)


def reward_scorers(rewards: RewardSet) -> dict[str, RewardFunction]:
    """Every reward of the run by its name: the functions as training calls them, reward models loaded once and
    called through :class:`~grpo_pipeline.rewards.models.RewardModelScorer`, each guarded (see rewards/guard.py)."""
    scorers = iter(reward_model_scorers(rewards.models))
    return {
        reward.name: reward.function if reward.function is not None else guarded(reward.name, next(scorers))
        for reward in rewards.rewards
    }


def _no_op(*args: Any, **kwargs: Any) -> None:
    """TRL's ``log_extra`` / ``log_metric`` outside training: validation has no completions table or step metrics."""


def run_coroutines(coroutines: list[Any], return_exceptions: bool = False) -> list[Any]:
    """The coroutines' results, run concurrently (``asyncio.gather``) on a fresh event loop in a thread of its own:
    this may be called where a loop already runs (a notebook)."""

    async def gather() -> list[Any]:
        return await asyncio.gather(*coroutines, return_exceptions=return_exceptions)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, gather()).result()


def call_rewards(scorers: dict[str, RewardFunction], completions: list[Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Each reward's values for ``completions``, the rewards called as ``GRPOTrainer._calculate_rewards`` calls them:
    same arguments, the async ones run concurrently on an event loop."""
    kwargs = {"completions": completions, **inputs, "log_extra": _no_op, "log_metric": _no_op}
    pending = {name: function for name, function in scorers.items() if is_async_reward(function)}
    values = {name: function(**kwargs) for name, function in scorers.items() if name not in pending}
    if pending:
        results = run_coroutines([function(**kwargs) for function in pending.values()])
        values |= dict(zip(pending, results, strict=True))
    return {name: values[name] for name in scorers}


def score(
    completions: list[Any],
    completion_ids: list[list[int]],
    frame: pd.DataFrame,
    scorers: dict[str, RewardFunction],
    weights: list[float],
    trainer_state: Any = None,
    reward_inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each reward and their weighted sum, as TRL computes them: a reward's ``None`` (not applicable) is left out of
    its mean and of the sum; a completion no reward applies to is left out of the total's mean."""
    prompts = frame["prompt"].tolist()
    columns = {
        column: frame[column].tolist() for column in frame.columns if column not in ("prompt", *FORMATTED_COLUMNS)
    }
    if is_conversational({"prompt": prompts[0]}):
        completions = [
            [{"role": "assistant", "content": text}] if isinstance(text, str) else text for text in completions
        ]
    inputs = {
        "prompts": prompts,
        "completion_ids": completion_ids,
        **columns,
        "trainer_state": trainer_state,
        **(reward_inputs or {}),
    }
    raw = call_rewards(scorers, completions, inputs)
    per_reward = {
        name: np.array([np.nan if v is None else v for v in values], dtype=float) for name, values in raw.items()
    }
    matrix = np.stack(list(per_reward.values()), axis=1)
    applicable = ~np.isnan(matrix)
    total = np.where(applicable.any(axis=1), np.nansum(matrix * np.asarray(weights), axis=1), np.nan)
    return {
        "mean_reward": _nanmean(total),
        "rewards": {name: _nanmean(values) for name, values in per_reward.items()},
        "skipped": {name: int(np.isnan(values).sum()) for name, values in per_reward.items()},
        "per_prompt": [None if np.isnan(value) else float(value) for value in total],
        "per_completion": per_reward,
    }


def _nanmean(values: np.ndarray) -> float | None:
    """The mean of the values a reward gave (NaN: not applicable), None when it applied to none."""
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else None

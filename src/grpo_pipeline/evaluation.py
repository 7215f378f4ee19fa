"""Generation (greedy, or sampled as GRPO samples) and reward scoring of a model on held-out prompts, for
checkpoint validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch
from trl.data_utils import is_conversational

from grpo_pipeline.config.schema import RewardParams
from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.rewards import RewardFunction, get_reward_functions
from grpo_pipeline.rewards.guard import guarded
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


def reward_scorers(reward_params: RewardParams) -> dict[str, RewardFunction]:
    """Every reward of ``reward_params`` by name, reward models loaded once, each guarded (see rewards/guard.py)."""
    models = [guarded(scorer.__name__, scorer) for scorer in reward_model_scorers(reward_params.models)]
    return dict(zip(reward_params.labels(), [*get_reward_functions(reward_params), *models], strict=True))


def score(
    completions: list[str],
    completion_ids: list[list[int]],
    frame: pd.DataFrame,
    scorers: dict[str, RewardFunction],
    weights: list[float],
) -> dict[str, Any]:
    """Each reward and their weighted sum (TRL's ``reward_weights``), the rewards called as GRPOTrainer calls them."""
    prompts = frame["prompt"].tolist()
    columns = {
        column: frame[column].tolist() for column in frame.columns if column not in ("prompt", *FORMATTED_COLUMNS)
    }
    if is_conversational({"prompt": prompts[0]}):
        completions = [[{"role": "assistant", "content": text}] for text in completions]
    inputs = {"prompts": prompts, "completion_ids": completion_ids, **columns}
    per_reward = {
        name: np.asarray(function(completions=completions, **inputs), dtype=float) for name, function in scorers.items()
    }
    total = sum(weight * values for weight, values in zip(weights, per_reward.values(), strict=True))
    return {
        "mean_reward": float(np.mean(total)),
        "rewards": {name: float(values.mean()) for name, values in per_reward.items()},
        "per_prompt": total.tolist(),
    }

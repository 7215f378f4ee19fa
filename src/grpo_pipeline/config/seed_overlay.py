"""Seed configs written for PPO-era TRL (``PPOConfig`` keys) applied as an overlay on GRPO parameters.

Each key is mapped to what it means for ``GRPOConfig``; a key with no GRPO meaning is an error that
says why, never silently dropped.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import yaml

from grpo_pipeline.config.trl_config import trl_default
from grpo_pipeline.errors import ParameterError

logger = logging.getLogger(__name__)

# What total_episodes is divided by; a key the section does not set takes TRL's default.
BATCH_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations")

# seed key -> (training parameter it sets, what the mapping means)
GRPO_MEANING: dict[str, tuple[str, str]] = {
    "max_new_tokens": ("max_completion_length", "tokens generated per completion"),
    "response_length": ("max_completion_length", "tokens generated per completion"),
    "num_ppo_epochs": ("num_iterations", "optimisation passes over each generation batch (GRPO's mu)"),
    "num_mini_batches": (
        "steps_per_generation",
        "each generation batch is split into this many optimizer steps, as PPO split a batch into mini-batches",
    ),
    "total_episodes": (
        "max_steps",
        "an episode is one prompt; max_steps = ceil(total_episodes / prompts per optimizer step), where prompts "
        "per step = per_device_train_batch_size x gradient_accumulation_steps / num_generations",
    ),
    "kl_coef": ("beta", "KL penalty coefficient"),
    "learning_rate": ("learning_rate", "same meaning"),
    "num_train_epochs": ("num_train_epochs", "same meaning"),
    "per_device_train_batch_size": ("per_device_train_batch_size", "same meaning (completions per device)"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", "same meaning"),
    "temperature": ("temperature", "same meaning"),
}

NO_GRPO_MEANING: dict[str, str] = {
    "vf_coef": "GRPO has no value network",
    "cliprange_value": "GRPO has no value network",
    "gamma": "GRPO scores whole completions; there is no discounting",
    "lam": "GRPO has no GAE; advantages are group-relative",
    "whiten_rewards": "GRPO normalises rewards within each group (training.scale_rewards)",
    "reward_model_path": "GRPO takes reward functions by name (reward.functions)",
    "sft_model_path": "the policy is model.name_or_path",
    "local_rollout_forward_batch_size": "generation batching follows the training batch in GRPO",
    "num_sample_generations": "checkpoint validation samples completions instead",
    "missing_eos_penalty": "write it as a reward function instead",
}


def apply_seed_config(
    training: dict[str, Any], seed_config: str, prefix: str = "run"
) -> tuple[dict[str, Any], list[str]]:
    """``training`` with the ``seed_config`` file applied, and one line per mapped key saying what it set;
    ``prefix`` is where ``seed_config`` is set, for messages."""
    path = Path(seed_config)
    if not path.is_file():
        raise ParameterError(
            f"parameter '{prefix}.seed_config': file '{path}' not found (paths are relative to the project root)"
        )
    overlay = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(overlay, dict):
        raise ParameterError(f"{path}: expected a mapping of config keys, got {type(overlay).__name__}")
    problems = [
        f"'{key}' has no GRPO meaning: {NO_GRPO_MEANING[key]}"
        if key in NO_GRPO_MEANING
        else f"'{key}' is not a known PPO/GRPO config key (known: {', '.join(sorted(GRPO_MEANING))})"
        for key in overlay
        if key not in GRPO_MEANING
    ]
    if problems:
        raise ParameterError(f"{path} (from {prefix}.seed_config) cannot be applied:\n  - " + "\n  - ".join(problems))

    merged = dict(training)
    mapping = []
    for key, value in overlay.items():
        if key == "total_episodes":
            continue
        target, meaning = GRPO_MEANING[key]
        merged[target] = value
        mapping.append(f"{key}: {value} -> {target}={value} ({meaning})")
    if "total_episodes" in overlay:
        batch = {key: merged.get(key, trl_default("GRPOConfig", key)) for key in BATCH_KEYS}
        prompts_per_step = (
            batch["per_device_train_batch_size"] * batch["gradient_accumulation_steps"] / batch["num_generations"]
        )
        merged["max_steps"] = max(1, math.ceil(overlay["total_episodes"] / prompts_per_step))
        mapping.append(
            f"total_episodes: {overlay['total_episodes']} -> max_steps={merged['max_steps']} "
            f"(ceil({overlay['total_episodes']} episodes / {prompts_per_step:g} prompts per step); "
            f"{GRPO_MEANING['total_episodes'][1]})"
        )
    for line in mapping:
        logger.info("seed config %s: %s", path, line)
    return merged, mapping

"""What ``trl.GRPOTrainer`` generates and scores with, as the run configures it: its rewards (functions, and reward
models with their tokenizers), its ``rollout_func``, tools and environments. Training and validation build their
trainers from this one place."""

from __future__ import annotations

from typing import Any

from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.training.rollouts import load_rollout_func


def trainer_sources(run_config: RunConfig, reward_models: list[tuple[Any, Any]]) -> dict[str, Any]:
    """``GRPOTrainer``'s ``reward_funcs``, ``reward_processing_classes``, ``rollout_func``, ``tools`` and
    ``environment_factory`` (``reward_models``: the run's reward models loaded, each with its tokenizer)."""
    functions = run_config.rewards.functions
    rollout_func = run_config.params.run.rollout_func
    return {
        "reward_funcs": [*functions, *(model for model, _ in reward_models)],
        "reward_processing_classes": [None] * len(functions) + [tokenizer for _, tokenizer in reward_models],
        "rollout_func": load_rollout_func(rollout_func) if rollout_func else None,
        **run_config.tools.trainer_kwargs(),
    }

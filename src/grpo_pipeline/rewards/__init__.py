"""Reward functions and the name registry the pipeline resolves ``reward.functions`` against."""

from __future__ import annotations

import difflib

from grpo_pipeline.config.schema import ParameterError
from grpo_pipeline.rewards.arithmetic import accuracy_reward, format_reward, length_reward
from grpo_pipeline.rewards.columns import ColumnCheck, column_checks
from grpo_pipeline.rewards.guard import RewardError, RewardFunction, guarded

REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "length": length_reward,
}


def get_reward_function(name: str) -> RewardFunction:
    """The registered reward called ``name``; an unknown name raises one error listing the valid ones."""
    try:
        return REWARD_FUNCTIONS[name]
    except KeyError:
        close = difflib.get_close_matches(name, REWARD_FUNCTIONS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ParameterError(
            f"Unknown reward function '{name}' in parameter 'reward.functions'.{hint} "
            f"Registered rewards: {sorted(REWARD_FUNCTIONS)} (see grpo_pipeline/rewards/__init__.py)."
        ) from None


def reward_column_checks(names: list[str]) -> list[tuple[str, str, ColumnCheck]]:
    """The column checks the rewards called ``names`` declare (see rewards/columns.py)."""
    return column_checks({name: get_reward_function(name) for name in names})


def get_reward_functions(names: list[str]) -> list[RewardFunction]:
    """The rewards called ``names``, each guarded (see rewards/guard.py): a broken value stops the run."""
    return [guarded(name, get_reward_function(name)) for name in names]


__all__ = [
    "REWARD_FUNCTIONS",
    "RewardError",
    "RewardFunction",
    "get_reward_function",
    "get_reward_functions",
    "reward_column_checks",
]

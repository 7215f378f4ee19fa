"""Reward functions and the name registry the pipeline resolves ``reward.functions`` against."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from typing import Any

from grpo_pipeline.config.schema import ParameterError, RewardFunctionParams, RewardParams
from grpo_pipeline.imports import import_object, is_import_path
from grpo_pipeline.rewards.arithmetic import accuracy_reward, format_reward, length_reward
from grpo_pipeline.rewards.columns import ColumnCheck, column_checks
from grpo_pipeline.rewards.guard import RewardError, RewardFunction, guarded

REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "length": length_reward,
}


# TRL's own rewards (trl.rewards), found by name; factories among them take their arguments from `kwargs`.
TRL_REWARDS = (
    "accuracy_reward",
    "reasoning_accuracy_reward",
    "get_cosine_scaled_reward",
    "think_format_reward",
    "get_repetition_penalty_reward",
    "get_soft_overlong_punishment",
)


def _is_reward(candidate: Any) -> bool:
    """A reward takes the completions (as text or token ids) and ``**kwargs`` (GRPOTrainer passes every column)."""
    try:
        parameters = inspect.signature(candidate).parameters
    except (TypeError, ValueError):
        return False
    takes_completions = "completions" in parameters or "completion_ids" in parameters
    return takes_completions and any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _find(target: str) -> Any:
    if target in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[target]
    if target in TRL_REWARDS:
        return getattr(importlib.import_module("trl.rewards"), target)
    if is_import_path(target):
        try:
            return import_object(target, "reward function", "my_package.rewards:brevity_reward")
        except ValueError as error:
            raise ParameterError(f"Invalid parameters:\n  - parameter 'reward.functions': {error}") from None
    close = difflib.get_close_matches(target, [*REWARD_FUNCTIONS, *TRL_REWARDS], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ParameterError(
        f"Unknown reward function '{target}' in parameter 'reward.functions'.{hint} Registered rewards: "
        f"{sorted(REWARD_FUNCTIONS)} (see grpo_pipeline/rewards/__init__.py); TRL's: {list(TRL_REWARDS)}; "
        "or an import path 'package.module:function'."
    )


def resolve_reward(entry: RewardFunctionParams) -> RewardFunction:
    """The reward ``entry`` names, its ``kwargs`` bound (or passed to the factory that makes it), signature-checked."""
    candidate = _find(entry.function)
    where = f"parameter 'reward.functions' entry '{entry.function}'"
    if _is_reward(candidate):
        parameters = inspect.signature(candidate).parameters
        named = [name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        # Rewards take **kwargs, which would swallow a misspelt argument without a word.
        unknown = sorted(set(entry.kwargs) - set(named) - {"completions", "completion_ids"})
        if unknown:
            raise ParameterError(
                f"Invalid parameters:\n  - {where}: unexpected keyword argument {unknown[0]!r}; it takes {named}"
            )
        function = functools.partial(candidate, **entry.kwargs) if entry.kwargs else candidate
    else:
        try:
            function = candidate(**entry.kwargs)
        except TypeError as error:
            raise ParameterError(
                f"Invalid parameters:\n  - {where}: calling it with kwargs {entry.kwargs} failed ({error}). A reward "
                "takes f(completions=..., **kwargs); anything else is called with kwargs as a factory that returns one"
            ) from None
    if not _is_reward(function):
        raise ParameterError(
            f"Invalid parameters:\n  - {where} is not a reward: GRPOTrainer calls rewards as "
            "f(completions=..., **kwargs) (or completion_ids=...) and they must accept **kwargs"
        )
    return function


def reward_column_checks(reward: RewardParams) -> list[tuple[str, str, ColumnCheck]]:
    """The column checks the rewards of ``reward`` declare (see rewards/columns.py)."""
    return column_checks({entry.label: resolve_reward(entry) for entry in reward.entries()})


def get_reward_functions(reward: RewardParams | list[str]) -> list[RewardFunction]:
    """The rewards of ``reward`` (or of a list of names), each guarded (see rewards/guard.py)."""
    params = reward if isinstance(reward, RewardParams) else RewardParams(functions=list(reward))
    return [guarded(entry.label, resolve_reward(entry)) for entry in params.entries()]


def reward_metric_names(reward: RewardParams) -> list[str]:
    """The names GRPOTrainer logs each reward under (``rewards/<name>/mean``): a function's own, a model's last path
    component."""
    return [function.__name__ for function in get_reward_functions(reward)] + [model.label for model in reward.models]


__all__ = [
    "REWARD_FUNCTIONS",
    "TRL_REWARDS",
    "RewardError",
    "RewardFunction",
    "get_reward_functions",
    "resolve_reward",
    "reward_column_checks",
    "reward_metric_names",
]

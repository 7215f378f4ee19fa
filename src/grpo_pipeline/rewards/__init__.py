"""Reward functions, the name registry ``reward.functions`` is resolved against, and the run's one reward set.

A reward's name is decided once, here, and used everywhere: GRPOTrainer's metrics (``rewards/<name>/mean``, TRL
names a reward after its ``__name__``), the validation report, the reward curve and ``compare_runs``. It is the
entry's ``name`` when given, else the registered name (``accuracy``), else the function's own name as TRL takes it
(a factory's: the function it returns, e.g. ``soft_overlong_punishment_reward``); a reward model's is the last
component of its path, as TRL names it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from grpo_pipeline.config.schema import RewardFunctionParams, RewardModelParams, RewardParams, invalid_parameters
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.imports import import_object, is_import_path
from grpo_pipeline.rewards.arithmetic import accuracy_reward, format_reward, length_reward
from grpo_pipeline.rewards.columns import CHECKS_ATTRIBUTE, ColumnCheck
from grpo_pipeline.rewards.guard import RewardError, RewardFunction, guarded

# The project's own rewards, by the name each has everywhere (none takes a TRL reward's name).
REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "length": length_reward,
}

logger = logging.getLogger(__name__)

# TRL's rewards that read only a completion's first message: with tools, the model's first call, not its answer.
FIRST_MESSAGE_REWARDS = ("accuracy_reward", "reasoning_accuracy_reward")

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


def callable_name(function: Any) -> str:
    """The name GRPOTrainer gives a reward function in its metrics."""
    from trl.trainer.utils import get_callable_name  # noqa: PLC0415 (TRL takes seconds to import; `kedro` starts without)

    return get_callable_name(function)


def _find(target: str, where: str) -> Any:
    if target in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[target]
    if target in TRL_REWARDS:
        return getattr(importlib.import_module("trl.rewards"), target)
    if is_import_path(target):
        try:
            return import_object(target, "reward function", "my_package.rewards:brevity_reward")
        except ValueError as error:
            raise ParameterError(f"{where}: {error}") from None
    close = difflib.get_close_matches(target, [*REWARD_FUNCTIONS, *TRL_REWARDS], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ParameterError(
        f"{where}: unknown reward function '{target}'; {hint}registered rewards: {sorted(REWARD_FUNCTIONS)} (see "
        f"grpo_pipeline/rewards/__init__.py), TRL's: {list(TRL_REWARDS)}, or an import path 'package.module:function'"
    )


def resolve_function(entry: RewardFunctionParams, where: str) -> Any:
    """The reward ``entry`` names, its ``kwargs`` bound (or passed to the factory that makes it), signature-checked;
    a :class:`ParameterError` whose message starts with ``where`` otherwise."""
    candidate = _find(entry.function, where)
    if _is_reward(candidate):
        parameters = inspect.signature(candidate).parameters
        named = [name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        # Rewards take **kwargs, which would swallow a misspelt argument without a word.
        unknown = sorted(set(entry.kwargs) - set(named) - {"completions", "completion_ids"})
        if unknown:
            raise ParameterError(f"{where}: unexpected keyword argument {unknown[0]!r}; it takes {named}")
        function = functools.partial(candidate, **entry.kwargs) if entry.kwargs else candidate
    else:
        try:
            function = candidate(**entry.kwargs)
        except TypeError as error:
            raise ParameterError(
                f"{where}: calling it with kwargs {entry.kwargs} failed ({error}). A reward takes "
                "f(completions=..., **kwargs); anything else is called with kwargs as a factory that returns one"
            ) from None
    if not _is_reward(function):
        raise ParameterError(
            f"{where} is not a reward: GRPOTrainer calls rewards as f(completions=..., **kwargs) (or "
            "completion_ids=...), sync or async, and they must accept **kwargs"
        )
    return function


@dataclass(frozen=True)
class Reward:
    """One reward of the run: its one name, its weight, and either a function (guarded) or a reward model."""

    name: str
    weight: float
    function: RewardFunction | None = None
    model: RewardModelParams | None = None
    column_checks: dict[str, ColumnCheck] = field(default_factory=dict)
    # An environment class whose get_reward() scores its rollouts: TRL adds that reward itself, after the others.
    environment: type | None = None


@dataclass(frozen=True)
class RewardSet:
    """The run's rewards in TRL's order (functions, then models), each named once; resolved once per process and
    handed to training, validation, the reward curve and the comparison."""

    rewards: tuple[Reward, ...]

    @property
    def names(self) -> list[str]:
        return [reward.name for reward in self.rewards]

    @property
    def weights(self) -> list[float]:
        """Every reward's weight, as the trainer weighs them (an environment's reward: 1)."""
        return [reward.weight for reward in self.rewards]

    @property
    def config_weights(self) -> list[float]:
        """``GRPOConfig.reward_weights``: the weights of the rewards the project hands the trainer (TRL adds an
        environment's reward with weight 1 itself)."""
        return [reward.weight for reward in self.rewards if reward.environment is None]

    @property
    def functions(self) -> list[RewardFunction]:
        """The reward functions the project hands the trainer (not an environment's, which TRL adds itself)."""
        return [reward.function for reward in self.rewards if reward.function is not None]

    @property
    def models(self) -> list[RewardModelParams]:
        return [reward.model for reward in self.rewards if reward.model is not None]

    def column_checks(self) -> list[tuple[str, str, ColumnCheck]]:
        """``(reward name, column, check)`` for every column check the rewards declare (rewards/columns.py)."""
        return [
            (reward.name, column, check) for reward in self.rewards for column, check in reward.column_checks.items()
        ]


def reward_name(entry: RewardFunctionParams, function: Any) -> str:
    if entry.name is not None:
        return entry.name
    return entry.function if entry.function in REWARD_FUNCTIONS else callable_name(function)


def reads_first_message_only(function: Any) -> bool:
    """Whether ``function`` is one of TRL's rewards that score ``completions[i][0]`` alone."""
    base = getattr(function, "func", function)
    return getattr(base, "__module__", "").startswith("trl.rewards") and base.__name__ in FIRST_MESSAGE_REWARDS


def resolve_rewards(
    params: RewardParams,
    prefix: str = "reward",
    environment_types: list[type] | tuple[type, ...] = (),
    with_tools: bool = False,
) -> RewardSet:
    """Every reward of ``params`` resolved, named and weighted, then one per environment class that scores its
    rollouts (``get_reward``), named after the class with weight 1 as TRL adds it; one ParameterError listing every
    problem. ``with_tools``: the model calls tools, and a reward that reads only the first message is warned of."""
    problems, rewards = [], []
    weights = params.weights or [1.0] * len(params.functions)
    for index, (entry, weight) in enumerate(zip(params.entries(), weights, strict=True)):
        where = f"parameter '{prefix}.functions[{index}]' ({entry.function})"
        try:
            function = resolve_function(entry, where)
        except ParameterError as error:
            problems += error.problems
            continue
        name = reward_name(entry, function)
        if with_tools and reads_first_message_only(function):
            # TRL accepts it, so the run goes on; it would score the call turn, so the user hears of it first.
            logger.warning(
                "%s: TRL's %s scores a completion's first message, which with tools is the model's first tool call, "
                "not its answer; use a reward that reads the final reply (e.g. the project's `accuracy`)",
                where,
                name,
            )
        checks = getattr(getattr(function, "func", function), CHECKS_ATTRIBUTE, {})
        rewards.append(Reward(name, weight, function=guarded(name, function), column_checks=checks))
    rewards += [Reward(model.label, model.weight, model=model) for model in params.models]
    rewards += [Reward(kind.__name__, 1.0, environment=kind) for kind in environment_types]
    if not rewards:
        problems.append(
            f"parameter '{prefix}': no reward; give one under functions or models, or an environment with get_reward"
        )
    names = [reward.name for reward in rewards]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        problems.append(
            f"parameter '{prefix}': more than one reward is named {repeated} (TRL would log them as one metric); "
            "list each reward once, or tell them apart with `name:` on an entry"
        )
    if not problems and not all(math.isfinite(weight) for weight in (reward.weight for reward in rewards)):
        problems.append(f"parameter '{prefix}.weights': weights must be finite numbers")
    if problems:
        raise invalid_parameters(problems)
    return RewardSet(tuple(rewards))


__all__ = [
    "REWARD_FUNCTIONS",
    "TRL_REWARDS",
    "Reward",
    "RewardError",
    "RewardFunction",
    "RewardSet",
    "resolve_rewards",
]

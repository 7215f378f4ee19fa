"""Rewards that stop the run on a broken value instead of letting it pass as a number.

TRL's contract (``GRPOTrainer._calculate_rewards``): a reward is called with the prompts, completions,
completion ids, every dataset column, ``trainer_state``, ``log_extra`` and ``log_metric``; it may be
``async``; it returns one value per completion, where ``None`` means "this reward does not apply to this
sample" (TRL averages around it). :func:`guarded` keeps all of that, sync stays sync and async stays async,
and turns what TRL would let through as a silently wrong number, or surface from deep inside the trainer,
into one :class:`RewardError` naming the reward, the training step and the prompt and completion: a raise,
NaN, inf, a value that is not a number, or the wrong number of values.
"""

from __future__ import annotations

import contextvars
import math
import numbers
from collections.abc import Awaitable, Callable
from typing import Any

from grpo_pipeline.errors import ProjectError

RewardFunction = Callable[..., "list[float | None] | Awaitable[list[float | None]]"]


class RewardError(ProjectError, RuntimeError):
    """A reward function raised or returned a value that is not a finite number (or None)."""


def is_async_reward(function: Any) -> bool:
    """Whether calling ``function`` returns a coroutine, decided as GRPOTrainer decides it."""
    from trl.trainer.utils import is_async_callable  # noqa: PLC0415 (TRL takes seconds to import; `kedro` starts without)

    return is_async_callable(function)


# Where rewards are being called when it is not training (e.g. "in validation"), for their error messages.
scoring_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("reward_scoring_context", default=None)


def _where(kwargs: dict[str, Any]) -> str:
    if (context := scoring_context.get()) is not None:
        return context
    step = getattr(kwargs.get("trainer_state"), "global_step", None)
    # TRL scores a step's completions before the step is counted: the step in progress is global_step + 1.
    return f"at training step {step + 1}" if isinstance(step, int) else "outside training"


def _row(kwargs: dict[str, Any], completions: list[Any], index: int) -> dict[str, Any]:
    per_completion = {
        key: [value[index]]
        for key, value in kwargs.items()
        if isinstance(value, list) and len(value) == len(completions)
    }
    return {**kwargs, "completions": [completions[index]], **per_completion}


def _describe(kwargs: dict[str, Any], completions: list[Any], index: int) -> str:
    prompts = kwargs.get("prompts")
    prompt = prompts[index] if isinstance(prompts, list) and index < len(prompts) else None
    return f"prompt {prompt!r}, completion {completions[index]!r}"


def _value_problem(values: Any, count: int) -> tuple[int | None, str] | None:
    """Where and what is wrong with a reward's ``values`` for ``count`` completions, or None."""
    if not isinstance(values, list | tuple) or len(values) != count:
        size = len(values) if isinstance(values, list | tuple) else type(values).__name__
        return None, f"returned {size} values for {count} completions; return one per completion (None: not applicable)"
    for index, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return index, f"returned {value!r}"
    return None


def _checked(name: str, values: Any, completions: list[Any], kwargs: dict[str, Any]) -> list[float | None]:
    problem = _value_problem(values, len(completions))
    if problem is None:
        return list(values)
    index, what = problem
    row = f" on {_describe(kwargs, completions, index)}" if index is not None else ""
    raise RewardError(
        f"Reward '{name}' {what} {_where(kwargs)}{row}. Rewards return a finite number for every completion, or None "
        "where the reward does not apply."
    )


def _raised(
    name: str, error: Exception, failing_row: int | None, completions: list[Any], kwargs: dict[str, Any]
) -> RewardError:
    row = f" on {_describe(kwargs, completions, failing_row)}" if failing_row is not None else ""
    return RewardError(
        f"Reward '{name}' raised {type(error).__name__}: {error} {_where(kwargs)}{row}. Fix the reward or the data "
        "it reads."
    )


def guarded(name: str, function: RewardFunction) -> RewardFunction:
    """``function`` checked on every call and named ``name`` (TRL names its metrics ``rewards/<__name__>/...``): a
    raise or a value that is neither a finite number nor None becomes one :class:`RewardError`."""
    if is_async_reward(function):

        async def async_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
            try:
                values = await function(completions=completions, **kwargs)
            except Exception as error:
                failing = None
                for index in range(len(completions)):
                    try:
                        await function(**_row(kwargs, completions, index))
                    except Exception:  # any failure: it is the one being located
                        failing = index
                        break
                raise _raised(name, error, failing, completions, kwargs) from error
            return _checked(name, values, completions, kwargs)

        reward: Any = async_reward
    else:

        def sync_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
            try:
                values = function(completions=completions, **kwargs)
            except Exception as error:
                failing = None
                for index in range(len(completions)):
                    try:
                        function(**_row(kwargs, completions, index))
                    except Exception:  # any failure: it is the one being located
                        failing = index
                        break
                raise _raised(name, error, failing, completions, kwargs) from error
            return _checked(name, values, completions, kwargs)

        reward = sync_reward
    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = getattr(function, "__doc__", None)
    reward.__wrapped__ = function
    return reward

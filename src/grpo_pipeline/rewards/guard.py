"""Rewards that stop the run on a broken value instead of letting TRL drop it.

TRL 1.16 turns a reward's ``None`` into NaN and averages around it, and a reward that raises surfaces as
a bare exception from deep inside the trainer. :func:`guarded` wraps a reward so that the first
NaN/inf/None, or exception, stops the run with one message naming the reward, the training step and
the prompt and completion it was scoring.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from grpo_pipeline.errors import ProjectError

RewardFunction = Callable[..., list[float]]


class RewardError(ProjectError, RuntimeError):
    """A reward function raised or returned a value that is not a finite number."""


def _where(kwargs: dict[str, Any]) -> str:
    state = kwargs.get("trainer_state")
    # TRL scores a step's completions before the step is counted: the step in progress is global_step + 1.
    return f"at training step {state.global_step + 1}" if state is not None else "outside training"


def _row(kwargs: dict[str, Any], completions: list[Any], index: int) -> dict[str, Any]:
    per_completion = {
        key: [value[index]]
        for key, value in kwargs.items()
        if isinstance(value, list) and len(value) == len(completions)
    }
    return {"completions": [completions[index]], **per_completion}


def _first_failing_row(function: RewardFunction, completions: list[Any], kwargs: dict[str, Any]) -> int | None:
    for index in range(len(completions)):
        try:
            function(**{**kwargs, **_row(kwargs, completions, index)})
        except Exception:  # any failure: it is the one being located
            return index
    return None


def _describe(kwargs: dict[str, Any], completions: list[Any], index: int) -> str:
    prompts = kwargs.get("prompts")
    prompt = prompts[index] if isinstance(prompts, list) and index < len(prompts) else None
    return f"prompt {prompt!r}, completion {completions[index]!r}"


def guarded(name: str, function: RewardFunction) -> RewardFunction:
    """``function`` checked on every call: a raise or a non-finite value becomes one :class:`RewardError`."""

    @functools.wraps(function)
    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        try:
            values = function(completions=completions, **kwargs)
        except Exception as error:
            index = _first_failing_row(function, completions, kwargs)
            row = f" on {_describe(kwargs, completions, index)}" if index is not None else ""
            raise RewardError(
                f"Reward '{name}' raised {type(error).__name__}: {error} {_where(kwargs)}{row}. Fix the reward or "
                "the data it reads."
            ) from error
        for index, value in enumerate(values):
            if value is None or not isinstance(value, int | float) or not math.isfinite(value):
                raise RewardError(
                    f"Reward '{name}' returned {value!r} {_where(kwargs)} on {_describe(kwargs, completions, index)}. "
                    "Rewards must return a finite number for every completion."
                )
        return values

    # functools.partial (a reward with bound kwargs) has no name of its own; TRL names metrics after __name__.
    reward.__name__ = reward.__qualname__ = getattr(function, "__name__", name)
    return reward

"""Rewards outside the package, named by import path in the tests (``tests.reward_examples:brevity``)."""

from __future__ import annotations

import asyncio
from typing import Any


def brevity(completions: list[Any], max_chars: int = 4, **kwargs: Any) -> list[float]:
    """1.0 for a completion of at most ``max_chars`` characters, else 0.0."""
    texts = [completion[-1]["content"] if isinstance(completion, list) else completion for completion in completions]
    return [1.0 if len(text.strip()) <= max_chars else 0.0 for text in texts]


def not_a_reward(value: int) -> int:
    return value


def nan_from_step_three(completions: list[Any], trainer_state: Any, **kwargs: Any) -> list[float]:
    """A reward that breaks mid-run: NaN from the third training step on."""
    return [float("nan") if trainer_state.global_step >= 2 else 1.0 for _ in completions]


async def judge_async(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """An LLM-judge-shaped reward: async, awaiting its (here instant) verdicts."""
    await asyncio.sleep(0)
    texts = [completion[-1]["content"] if isinstance(completion, list) else completion for completion in completions]
    return [1.0 if text.strip() == str(reference) else 0.0 for text, reference in zip(texts, answer, strict=True)]


def odd_digits_only(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float | None]:
    """A reward for one kind of problem only (multi-task data): None, not applicable, where the answer is even."""
    texts = [completion[-1]["content"] if isinstance(completion, list) else completion for completion in completions]
    return [
        None if int(reference) % 2 == 0 else float(text.strip() == str(reference))
        for text, reference in zip(texts, answer, strict=True)
    ]

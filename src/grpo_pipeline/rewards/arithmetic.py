"""Verifiable rewards for the shipped arithmetic task.

Each reward is a plain function ``(completions, **kwargs) -> list[float]`` with values in [0, 1], the
shape ``trl.GRPOTrainer`` calls: ``completions`` holds either strings or, for conversational prompts,
lists of messages; dataset columns (here ``answer``) arrive as keyword arguments.
"""

from __future__ import annotations

import re
from typing import Any

from grpo_pipeline.rewards.columns import checks_columns
from grpo_pipeline.tools import assistant_turns

_INTEGER = re.compile(r"-?\d+")


def integer_problem(value: str) -> str | None:
    """What keeps ``value`` from being an integer answer, or None."""
    return None if _INTEGER.fullmatch(value.strip()) else f"{value!r} is not an integer"


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The model's final reply in one completion: the text, or for conversational completions the last assistant
    message (a completion with tool calls also holds the calls and the tools' answers, which are not the reply)."""
    if isinstance(completion, str):
        return completion
    replies = assistant_turns(completion)
    return str(replies[-1].get("content") or "") if replies else ""


def stated_answer(reply: str) -> int | None:
    """The integer a reply gives as its answer: what follows its last ``=`` when it states an equation
    (``7 + 7 = 14``; ``12 * 11 =``, cut before its result, gives none), else its first integer (``14``,
    ``The answer is 14.``); None when there is none."""
    match = _INTEGER.search(reply.rsplit("=", 1)[-1])
    return int(match.group()) if match is not None else None


@checks_columns(answer=integer_problem)
def accuracy_reward(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's stated answer (``stated_answer``) equals the reference answer, else 0.0."""
    return [
        1.0 if stated_answer(completion_text(completion)) == int(reference) else 0.0
        for completion, reference in zip(completions, answer, strict=True)
    ]


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 for a bare integer answer; otherwise partial credit for the share of digit characters.

    The partial credit gives a randomly initialised policy a gradient to climb: a bare integer is
    almost never sampled by chance, but completions differ in how many digits they contain.
    """
    rewards = []
    for completion in completions:
        text = completion_text(completion).strip()
        if _INTEGER.fullmatch(text):
            rewards.append(1.0)
        elif text:
            digits = sum(character.isdigit() for character in text)
            rewards.append(0.5 * digits / len(text))
        else:
            rewards.append(0.0)
    return rewards


def length_reward(completions: list[Any], target_chars: int = 3, **kwargs: Any) -> list[float]:
    """1.0 for a non-empty answer of at most ``target_chars`` characters, decaying as ``target/len`` beyond."""
    rewards = []
    for completion in completions:
        length = len(completion_text(completion).strip())
        rewards.append(0.0 if length == 0 else min(1.0, target_chars / length))
    return rewards

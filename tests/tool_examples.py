"""Tools and environments the tool tests name by import path, as a user's own module would hold them."""

from __future__ import annotations

import asyncio
from typing import Any

CALLS: list[tuple[str, dict[str, Any]]] = []


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first term.
        b: The second term.
    """
    CALLS.append(("add", {"a": a, "b": b}))
    return a + b


async def slow_add(a: int, b: int) -> int:
    """Add two integers, asynchronously (a remote calculator, say).

    Args:
        a: The first term.
        b: The second term.
    """
    await asyncio.sleep(0)
    CALLS.append(("slow_add", {"a": a, "b": b}))
    return a + b


def untyped(a, b):  # no type hints: the point of this tool
    """Add two numbers.

    Args:
        a: The first term.
        b: The second term.
    """
    return a + b


def undocumented(a: int, b: int) -> int:
    return a + b


class Counter:
    """A stateful environment: a running total the model adds to across tool calls; a rollout is right when the
    total reaches the row's answer."""

    def __init__(self) -> None:
        self.total = 0
        self.target: int | None = None

    def reset(self, answer: str, **kwargs: Any) -> str:
        self.total, self.target = 0, int(answer)
        return f" Start from {self.total}."

    def increment(self, amount: int) -> int:
        """Add to the running total and return it.

        Args:
            amount: How much to add.
        """
        self.total += amount
        return self.total

    def get_reward(self) -> float:
        return 1.0 if self.total == self.target else 0.0


class NoReset:
    """An environment TRL cannot start: it has no ``reset``."""

    def increment(self, amount: int) -> int:
        """Add to nothing.

        Args:
            amount: How much to add.
        """
        return amount


class NoReward(Counter):
    """An environment that does not score its rollouts."""

    get_reward = None  # type: ignore[assignment]

"""The calculator of the ``grpo_tools`` variant: a tool as ``trl.GRPOTrainer(tools=...)`` takes one.

TRL shows the model a tool's name, type hints and Google-style docstring, so those are its interface.
"""

from __future__ import annotations


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b

"""How a reward declares what its dataset columns must hold, so bad rows are found before training starts.

``@checks_columns(answer=integer_problem)`` on a reward says: every row's ``answer`` must pass
``integer_problem(value) -> str | None`` (None when fine, else what is wrong). Prompt preparation runs
these checks on every row, before the first node writes, instead of the reward failing mid-training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ColumnCheck = Callable[[str], "str | None"]
CHECKS_ATTRIBUTE = "column_checks"


def checks_columns(**checks: ColumnCheck) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare, on a reward function, a check for each dataset column it reads."""

    def declare(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, CHECKS_ATTRIBUTE, checks)
        return function

    return declare

"""The project's own errors: their message says what is wrong and the way on, so it is shown without a traceback."""

from __future__ import annotations


class ProjectError(Exception):
    """Base of every error whose message is written for the user (``kedro run`` prints just the message)."""


class ParameterError(ProjectError, ValueError):
    """Bad parameters: the message names each offending key, its value and what is allowed; ``problems`` holds one
    line per problem, for a caller that gathers them into one error."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


# Every parameter error starts so, one problem per line below it.
PARAMETER_ERROR_HEADER = "Invalid parameters:"


def invalid_parameters(problems: list[str], error: type[ParameterError] = ParameterError) -> ParameterError:
    """One error for every problem found, one line each, under the header every parameter error has."""
    return error(PARAMETER_ERROR_HEADER + "\n  - " + "\n  - ".join(problems), problems)

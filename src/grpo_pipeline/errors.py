"""The project's own errors: their message says what is wrong and the way on, so it is shown without a traceback."""

from __future__ import annotations


class ProjectError(Exception):
    """Base of every error whose message is written for the user (``kedro run`` prints just the message)."""

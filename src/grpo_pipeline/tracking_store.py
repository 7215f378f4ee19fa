"""The MLflow tracking store: the SQLite file behind a ``sqlite:///`` tracking URI, checked before MLflow opens it;
a tracking server that stops answering during a run.

MLflow meets a file that is not a database with two tracebacks ("file is not a database"), without naming
it; and a refused run should leave no store behind that it created. A server that goes away makes every MLflow
request retry for minutes and then fail with a traceback naming an API path: the run stops instead, naming the
server, and keeps what it could not record for the next run that reaches it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_pipeline.errors import ProjectError

SQLITE_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"


class TrackingStoreError(ProjectError):
    """The tracking store cannot be used; it is left untouched."""


def sqlite_store(tracking_uri: str | None) -> Path | None:
    """The file of a ``sqlite:///`` URI (a relative one, as SQLite opens it: from the working directory)."""
    if not tracking_uri or not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri.removeprefix(SQLITE_PREFIX).split("?")[0])


def check_sqlite_store(store: Path, setting: str) -> None:
    """Raise :class:`TrackingStoreError` when ``store`` exists and is not an SQLite database (an empty file is a new
    one to SQLite)."""
    if not store.exists():
        return
    try:
        with store.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise TrackingStoreError(
            f"The MLflow tracking store {store} ({setting}) cannot be read: {error.strerror}."
        ) from None
    if header and header != SQLITE_HEADER:
        raise TrackingStoreError(
            f"The MLflow tracking store {store.resolve()} ({setting}) is not an SQLite database; it was left as it "
            f"is. Move it aside to start a new store (`mv {store} {store}.broken`), or point {setting} at another "
            "file."
        )


def remove_if_unused(store: Path) -> None:
    """Delete ``store`` when it holds no run: the store a refused run created, so that it leaves nothing behind."""
    if not store.is_file():
        return
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as connection:
            (runs,) = connection.execute("SELECT count(*) FROM runs").fetchone()
    except sqlite3.Error:
        return
    if runs == 0:
        store.unlink()


def check_tracking_server(tracking_uri: str | None, setting: str) -> None:
    """Raise :class:`TrackingStoreError` when ``tracking_uri`` is a tracking server (http, https) that does not
    answer (its health endpoint, once, for at most 10 s), before MLflow spends minutes retrying each request."""
    if not tracking_uri or not re.match(r"https?://", tracking_uri):
        return
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 (only a tracking server needs it)
    from mlflow.utils.credentials import get_default_host_creds  # noqa: PLC0415 (same)
    from mlflow.utils.rest_utils import http_request  # noqa: PLC0415 (same)

    timeout = min(10, int(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120))
    try:
        # Any answer will do (a proxy's 401 included): MLflow's own client settings (TLS, credentials) are used.
        http_request(get_default_host_creds(tracking_uri), "/health", "GET", max_retries=0, timeout=timeout)
    except MlflowException as error:
        if (silent := _unanswered_request(error, None)) is None:
            raise
        raise TrackingStoreError(
            f"The MLflow tracking server {silent.server} ({setting}) does not answer ({silent.cause}). Start it, or "
            f"point {setting} at one that answers (sqlite:///mlflow.db tracks in the project); a run that was "
            "stopped when it stopped answering resumes once it does."
        ) from None


class TrackingServerLostError(ProjectError):
    """The MLflow tracking server stopped answering: the run stops (training after a complete checkpoint), and what
    it could not record in MLflow the next run that reaches the server records for it."""

    def __init__(self, server: str, cause: str, step: int | None = None) -> None:
        self.server, self.cause = server, cause
        # What running the same command again does; the run's hooks say, once they know what is on disk.
        self.what_next = "Run the same command again once the server answers."
        where = f" at training step {step}" if step is not None else ""
        super().__init__(f"the MLflow tracking server {server} stopped answering{where} ({cause})")


_RETRIES_SETTING = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


@dataclass
class _Lost:
    error: TrackingServerLostError | None = None
    retries: str | None = None  # the retries setting before the loss, restored by forget_lost_server
    # What the run could not record in MLflow, by run id: {"status": ..., "tags": {...}}.
    unrecorded: dict[str, dict[str, Any]] = field(default_factory=dict)


_lost = _Lost()


def lost_server(error: BaseException | None = None, step: int | None = None) -> TrackingServerLostError | None:
    """The loss of the tracking server: one this run already met, or the one behind ``error`` (an MLflow request
    that got no answer, anywhere in its chain of causes; ``step``: the training step it was met at), else None.

    Once the server is lost, every later MLflow request of the run (closing it FAILED, tagging it) is tried once
    instead of being retried (MLFLOW_HTTP_REQUEST_MAX_RETRIES: 4 in the project's runs, see runtime.py).
    """
    if _lost.error is None and error is not None and (found := _unanswered_request(error, step)) is not None:
        _lost.error, _lost.retries = found, os.environ.get(_RETRIES_SETTING)
        os.environ[_RETRIES_SETTING] = "0"
    return _lost.error


def record_later(run_id: str | None, status: str | None = None, tags: dict[str, str] | None = None) -> None:
    """Keep what could not be written to MLflow run ``run_id`` for :func:`unrecorded`."""
    if run_id:
        entry = _lost.unrecorded.setdefault(run_id, {"status": None, "tags": {}})
        entry["status"] = status or entry["status"]
        entry["tags"].update(tags or {})


def unrecorded(run_id: str | None) -> dict[str, Any] | None:
    """What :func:`record_later` kept for ``run_id``: the run's hooks leave it in the lock file, for the next run of
    the variant to write."""
    return _lost.unrecorded.get(run_id) if run_id else None


def drop_active_runs() -> None:
    """Once the server is lost: let go of the MLflow runs this process holds open without asking the server to end
    them, which would wait for it once per run (kedro-mlflow reopens its run for each node); how they ended is kept
    for the next run to record (:func:`record_later`)."""
    from mlflow.tracking import fluent  # noqa: PLC0415 (only a failed run needs it)

    fluent._active_run_stack.get().clear()  # MLflow has no public way to forget a run without ending it


def forget_lost_server() -> None:
    """A new run in this process starts with the server reachable and MLflow's retries as they were."""
    if _lost.error is not None:
        if _lost.retries is None:
            os.environ.pop(_RETRIES_SETTING, None)
        else:
            os.environ[_RETRIES_SETTING] = _lost.retries
    _lost.error, _lost.retries, _lost.unrecorded = None, None, {}


def _unanswered_request(error: BaseException, step: int | None) -> TrackingServerLostError | None:
    """The MLflow request in ``error``'s chain of causes that got no answer (no connection, a timeout, retries
    spent on 5xx answers of a proxy), as a :class:`TrackingServerLostError`."""
    import requests  # noqa: PLC0415 (only a failed run needs it)
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 (same)

    no_answer = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TrackingServerLostError):
            return current
        inner = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        request = re.match(r"API request to (\w+://[^/\s]+)\S* failed with (?:timeout )?exception", str(current))
        if isinstance(current, MlflowException) and request and isinstance(inner, no_answer):
            return TrackingServerLostError(request[1], _why_no_answer(inner), step)
        current = inner
    return None


def _why_no_answer(error: BaseException) -> str:
    import requests  # noqa: PLC0415 (only a failed run needs it)

    if isinstance(error, requests.Timeout) or "timed out" in str(error):
        return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s, MLFLOW_HTTP_REQUEST_TIMEOUT"
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)|too many \d+ error responses", str(error))
    return (reason[1] or reason[0]) if reason else type(error).__name__

"""The SQLite file behind a ``sqlite:///`` MLflow tracking URI, checked before MLflow opens it.

MLflow meets a file that is not a database with two tracebacks ("file is not a database"), without naming
it; and a refused run should leave no store behind that it created.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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

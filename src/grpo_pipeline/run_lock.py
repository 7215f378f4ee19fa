"""One run per variant output: an exclusive lock on a file in the variant's training output directory.

The lock is an ``flock`` on an open file, so the operating system releases it when its process ends,
however it ends: a lock is never stale. The file records its holder (pid, host, command, start time and,
once known, the MLflow run), so a second run can say who is running, and the next run after a crash can
tell which MLflow run was left RUNNING.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from grpo_pipeline.errors import ProjectError

LOCK_FILE = "run.lock"


class RunLockedError(ProjectError, RuntimeError):
    """Another process is running the same variant, writing the same outputs."""


class RunLock:
    """The exclusive lock of one variant's outputs; :meth:`acquire` returns what the previous holder recorded."""

    def __init__(self, directory: str | Path, variant: str) -> None:
        self.path = Path(directory) / LOCK_FILE
        self.variant = variant
        self._handle: IO[str] | None = None
        self._record: dict[str, Any] = {}

    def check_free(self) -> None:
        """Raise :class:`RunLockedError` if another process holds the lock; writes nothing."""
        if self.path.is_file():
            with self.path.open("r", encoding="utf-8") as handle:
                self._lock_or_raise(handle)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def acquire(self) -> dict[str, Any]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as error:
            raise RunLockedError(
                f"Variant '{self.variant}' cannot write its training output folder {self.path.parent} "
                f"({error.strerror}: {error.filename}). Set {self.variant}.training.output_dir to a folder this user "
                "can create and write."
            ) from None
        self._lock_or_raise(handle)
        previous = self._read(handle)
        self._handle = handle
        self._record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        self._write()
        return previous

    def recorded(self, field: str) -> Any:
        return self._record.get(field)

    def record(self, **fields: Any) -> None:
        """Add ``fields`` (e.g. the MLflow run id) to what the lock file says about its holder."""
        self._record.update(fields)
        self._write()

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def _lock_or_raise(self, handle: IO[str]) -> None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(handle)
            handle.close()
            raise RunLockedError(
                f"Variant '{self.variant}' is already running (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}: {holder.get('command', '?')}); "
                f"its outputs are locked by {self.path}. Wait for it or stop it. To train two configurations at "
                "once, give the second a variant of its own (docs/configuration.md, 'Adding a variant'), which "
                "writes its own outputs."
            ) from None

    @staticmethod
    def _read(handle: IO[str]) -> dict[str, Any]:
        handle.seek(0)
        try:
            return json.loads(handle.read() or "{}")
        except json.JSONDecodeError:
            return {}

    def _write(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(json.dumps(self._record) + "\n")
            self._handle.flush()

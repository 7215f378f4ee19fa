"""A run outlives the terminal or pipe that shows it.

``kedro run | tee log`` stopped with Ctrl-C kills ``tee`` as well as the run, and a closed terminal takes its tty
with it. Python ignores SIGPIPE, so the next write to such a stream raises (``BrokenPipeError``; ``EIO`` on a
hung-up tty) inside whatever was writing — a rich log handler, a progress bar, a ``print`` — and that error, not
the interruption, ended the run: click exited 1 without a word and MLflow's exit handler ended the run FINISHED.
While :func:`outlive_closed_output` is in effect, the first such write points the stream's file descriptor at
``/dev/null``, so that every later write by any holder of it succeeds, and the run goes on or stops for its own
reason: an interruption is recorded as one, a run under ``nohup`` finishes. The log file (``logs/``) still gets
everything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

# What a write to a pipe with no reader, or to a terminal that hung up, fails with.
GONE = frozenset({errno.EPIPE, errno.EIO})


class _OutlivedStream:
    """``stream``, whose writes to a reader that went away are discarded (see the module doc)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as error:
            self._discard(error)
            return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            self._discard(error)

    def _discard(self, error: OSError) -> None:
        if error.errno not in GONE:
            raise error
        try:
            descriptor = self._stream.fileno()
        except (OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)
        with contextlib.suppress(OSError):
            self._stream.flush()  # what was buffered for the reader that left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def outlive_closed_output() -> Iterator[None]:
    """For the block, ``sys.stdout`` and ``sys.stderr`` outlive their reader (see the module doc)."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutlivedStream(stdout), _OutlivedStream(stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr

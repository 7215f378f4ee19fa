"""Stopping a run on SIGINT (Ctrl-C), SIGTERM (a scheduler preempting the job) and SIGHUP (its terminal closed)
so that it is recorded as stopped.

Python turns SIGINT into ``KeyboardInterrupt``, which is not an ``Exception``: code that cleans up after
errors (Kedro's ``on_pipeline_error`` hooks, kedro-mlflow ending its run FAILED) never sees it, and MLflow's
exit handler then ends the still-open run FINISHED. SIGTERM and SIGHUP, by default, end the process at once,
the MLflow run left RUNNING. While :func:`handle_stop_signals` is in effect, each raises :class:`RunInterrupted`
(an ``Exception``) instead, so the run's error path records it. During training (:func:`graceful_stop_window`)
SIGTERM and SIGHUP only ask the trainer to stop: a trainer callback lets the current step finish, has the
trainer save a complete checkpoint, and the training code then raises :class:`RunInterrupted`, so preemption
or a closed terminal loses no step. (``training.trainer.StopOnSignalCallback`` is that callback.)
A second signal while stopping gracefully interrupts at once. A signal the process was started ignoring
(SIGHUP under ``nohup``, SIGINT for a shell's background job) stays ignored: the user asked for that.
A failure the run cannot go on after, but which need not lose the steps trained (the MLflow tracking server
gone), stops training the same way (:func:`stop_training_for`) and is raised once the checkpoint is written.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from grpo_pipeline.errors import ProjectError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Stop after the current step and a checkpoint, rather than at once (Ctrl-C).
GRACEFUL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# What asks training to stop when a failure does (stop_training_for), where a signal's number would: above every
# signal's, so that the processes of a distributed run, sharing the largest request, all stop for it.
STOP_FOR_FAILURE = 1000


class RunInterrupted(ProjectError):
    """The run was stopped by a signal; ``step`` is the training step it reached, when it was training."""

    def __init__(self, signal_number: int, step: int | None = None, max_steps: int | None = None) -> None:
        self.signal_number = signal_number
        self.step = step
        # What running the same command again does; the run's hooks say, once they know what is on disk.
        self.what_next = "Run the same command again."
        _state.interrupted = True
        of = f" of {max_steps}" if max_steps and max_steps > 0 else ""
        where = f" at training step {step}{of}" if step is not None else ""
        super().__init__(f"interrupted by {self.signal_name}{where}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process the signal ended."""
        return 128 + self.signal_number


@dataclass
class _StopState:
    graceful: bool = False  # inside graceful_stop_window: SIGTERM asks the trainer to stop
    requested: int | None = None  # the signal that asked for a graceful stop, or STOP_FOR_FAILURE
    failure: ProjectError | None = None  # the failure that asked for it (stop_training_for)
    step: int | None = None  # the training step reached, while training
    max_steps: int | None = None
    interrupted: bool = False  # a signal stopped the run: what fails from here on is its consequence


_state = _StopState()


def _on_signal(signal_number: int, frame: FrameType | None) -> None:
    if signal_number in GRACEFUL_SIGNALS and _state.graceful and _state.requested is None:
        _state.requested = signal_number
        return
    raise RunInterrupted(signal_number, _state.step, _state.max_steps)


def interruption_of(error: BaseException) -> RunInterrupted | None:
    """``error`` if it is a :class:`RunInterrupted`, or the one it was raised in place of: a library that turns every
    exception inside its calls into its own (MLflow's stores and HTTP client do) turns a Ctrl-C that lands during
    one of them into its error; the run was still interrupted."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, RunInterrupted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def install_stop_signal_handlers() -> dict[int, Any]:
    """Make the stop signals the process does not ignore raise :class:`RunInterrupted` until
    :func:`restore_signal_handlers` gets what this returns; outside the main thread this does nothing (Python
    delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    # What an earlier run in this process reached is not this run's.
    _state.step = _state.max_steps = None
    _state.interrupted = False
    return {
        number: signal.signal(number, _on_signal)
        for number in STOP_SIGNALS
        if signal.getsignal(number) is not signal.SIG_IGN
    }


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


@contextmanager
def handle_stop_signals() -> Iterator[None]:
    """:func:`install_stop_signal_handlers` for the block."""
    previous = install_stop_signal_handlers()
    try:
        yield
    finally:
        restore_signal_handlers(previous)


@contextmanager
def graceful_stop_window() -> Iterator[None]:
    """While training: SIGTERM lets the current step finish and a checkpoint be written (see the module doc)."""
    _state.graceful, _state.requested, _state.failure = True, None, None
    try:
        yield
    finally:
        _state.graceful = False


def interrupted() -> bool:
    """Whether a signal has stopped the run (since :func:`install_stop_signal_handlers`)."""
    return _state.interrupted


def stop_requested() -> int | None:
    """The signal that asked training to stop gracefully (or :data:`STOP_FOR_FAILURE`), if one did."""
    return _state.requested


def stop_training_for(failure: ProjectError) -> None:
    """Have training stop after the current step and a complete checkpoint, as SIGTERM does, and the run then fail
    with ``failure`` (:func:`raise_if_stopped`); the first failure is the one raised."""
    if _state.failure is None:
        _state.failure = failure
    if _state.requested is None:
        _state.requested = STOP_FOR_FAILURE


def record_progress(step: int, max_steps: int) -> None:
    """The training step reached, for the message and record of an interruption."""
    _state.step, _state.max_steps = step, max_steps


def confirm_stop(signal_number: int) -> None:
    """Stop gracefully because another process of the run was asked to (distributed training)."""
    _state.requested = signal_number


class StoppedElsewhereError(ProjectError):
    """Another process of a distributed run failed; this one stopped with it, after the same checkpoint."""


def raise_if_stopped() -> None:
    """After training returned: raise :class:`RunInterrupted` when it returned because a signal asked it to, or the
    failure that asked it to."""
    if _state.requested == STOP_FOR_FAILURE:
        raise _state.failure or StoppedElsewhereError(
            f"another training process failed at training step {_state.step}; its message is above"
        )
    if _state.requested is not None:
        raise RunInterrupted(_state.requested, _state.step, _state.max_steps)

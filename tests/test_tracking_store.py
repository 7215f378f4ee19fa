"""A tracking server that does not answer, met by MLflow's own client (no server runs here: the port is closed)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kedro.io import DatasetError
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_settings

from grpo_pipeline.interruption import RunInterrupted, install_stop_signal_handlers, restore_signal_handlers
from grpo_pipeline.tracking_store import (
    TrackingStoreError,
    check_tracking_server,
    forget_lost_server,
    lost_server,
    record_later,
    unrecorded,
)
from grpo_pipeline.training.checkpoints import unwritten_checkpoint_error
from grpo_pipeline.training.mlflow_logging import MlflowStepMetricsCallback


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URI of a tracking server that refuses connections, with MLflow's retries as a user may have set them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    yield f"http://127.0.0.1:{port}"
    forget_lost_server()


def _unanswered(uri: str) -> MlflowException:
    with pytest.raises(MlflowException) as raised:
        MlflowClient(tracking_uri=uri).log_batch("0" * 32, metrics=[Metric("reward", 1.0, 0, 1)])
    return raised.value


def test_a_lost_server_is_named_once_and_asked_nothing_more_until_the_next_run(silent_server: str) -> None:
    error = _unanswered(silent_server)
    assert lost_server() is None
    lost = lost_server(DatasetError("Failed while saving data"), step=None) or lost_server(error, step=7)
    said = f"the MLflow tracking server {silent_server} stopped answering at training step 7 (Connection refused)"
    assert str(lost) == said
    # Every later request of the run is tried once, not retried for minutes; the first loss is the one kept.
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert lost_server(_unanswered(silent_server), step=9) is lost
    record_later("run-1", status="FAILED", tags={"grpo.outcome": "failed in debug.train_grpo"})
    assert unrecorded("run-1") == {"status": "FAILED", "tags": {"grpo.outcome": "failed in debug.train_grpo"}}
    forget_lost_server()
    assert lost_server() is None and unrecorded("run-1") is None
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"


def test_the_loss_is_found_behind_what_it_made_fail_and_nothing_else_is_taken_for_it(silent_server: str) -> None:
    try:
        try:
            raise _unanswered(silent_server)
        except MlflowException as error:
            raise DatasetError("Failed while saving data to dataset MlflowArtifactDataset(...)") from error
    except DatasetError as wrapped:
        assert lost_server(wrapped).server == silent_server
    forget_lost_server()
    assert lost_server(MlflowException("RESOURCE_DOES_NOT_EXIST: Run '0' not found")) is None
    assert lost_server(ConnectionRefusedError("a vLLM server, say")) is None


def test_a_run_is_refused_before_work_while_its_tracking_server_does_not_answer(silent_server: str) -> None:
    with pytest.raises(TrackingStoreError, match=rf"^The MLflow tracking server {silent_server} \(the setting\) does "):
        check_tracking_server(silent_server, "the setting")
    assert lost_server() is None  # nothing was lost: the run never started
    check_tracking_server("sqlite:///mlflow.db", "the setting")  # a local store is not probed


def test_only_a_failed_write_is_blamed_on_the_disk(tmp_path: Path) -> None:
    """What fails while a checkpoint is saved (a callback's request, say) is not a full disk."""
    (tmp_path / "checkpoint-10").mkdir()
    assert unwritten_checkpoint_error(tmp_path, 10, MlflowException("API request failed")) is None
    written = unwritten_checkpoint_error(tmp_path, 10, RuntimeError("[enforce fail at inline_container.cc:672] ."))
    assert written is not None and str(written).startswith(f"writing checkpoint {tmp_path}/checkpoint-10 failed")


def test_ctrl_c_during_a_request_to_the_server_is_an_interruption_not_an_mlflow_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow turns every exception inside its requests into its own: a Ctrl-C while a metric flush waits on the server
    came out as an MlflowException (a traceback, the run recorded FAILED)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    with socket.socket() as hanging:  # listens, never answers: a request waits on it
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()
        # The flush writes where MLflow tracks: set for this test (an earlier run in this process may have set it).
        monkeypatch.setattr(tracking_settings, "_tracking_uri", f"http://127.0.0.1:{hanging.getsockname()[1]}")
        callback = MlflowStepMetricsCallback("0" * 32)
        callback._pending = [Metric("reward", 1.0, 0, 1)]
        previous = install_stop_signal_handlers()
        ctrl_c = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        ctrl_c.start()
        try:
            with pytest.raises(RunInterrupted, match=r"^interrupted by SIGINT"):
                callback.flush(step=3)
        finally:
            ctrl_c.cancel()
            restore_signal_handlers(previous)
    assert lost_server() is None

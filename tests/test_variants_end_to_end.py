"""grpo_full and grpo_lora on the tiny model, the seed-config overlay, and resuming after `kill -9`."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from grpo_pipeline.config.schema import TinyModelParams
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.run_lock import RunLock
from grpo_pipeline.sandbox import params_option
from grpo_pipeline.training.checkpoints import RUN_FINISHED_MARKER, complete_checkpoints
from tests.conftest import KEDRO, NO_GATES, invoke_kedro, mlflow_runs, run_kedro

TINY_MODEL = "data/06_models/tiny"


def tiny_overrides(variant: str, **extra: object) -> str:
    """--params that run a hub-model variant on the tiny model in seconds."""
    values = {
        "model.name_or_path": TINY_MODEL,
        "training.use_cpu": "true",
        "training.max_steps": 12,
        "training.learning_rate": 0.003,
        "training.per_device_train_batch_size": 16,
        "training.num_generations": 8,
        "training.max_completion_length": 8,
        "formatting.max_prompt_length": 64,
        "validation.max_new_tokens": 8,
        # A random tiny model, a dozen steps: it answers alike or not at all; the mechanics are under test.
        "validation.max_same_answer_share": "null",
        "validation.max_no_answer_share": "null",
        **extra,
    }
    return params_option(variant, values)


@pytest.fixture
def project(debug_project: Path) -> Path:
    """A project copy with the debug run's models and, for the hub-model variants, a tiny model in its place."""
    ensure_tiny_model(debug_project / TINY_MODEL, TinyModelParams())
    return debug_project


def test_grpo_full_on_the_tiny_model(project: Path) -> None:
    run_kedro(project, "run", "--pipelines=grpo_full", tiny_overrides("full"))
    checkpoint = project / "data/06_models/full/checkpoint"
    assert (checkpoint / "model.safetensors").is_file() and not (checkpoint / "adapter_config.json").exists()
    report = json.loads((project / "data/08_reporting/full/validation_report.json").read_text())
    assert report["status"] == "NO GATE" and report["global_step"] == 12 and report["adapter"] is False
    benchmark = pd.read_csv(project / "data/08_reporting/full/benchmark.csv")
    assert benchmark.loc[0, "mode"] == "full" and benchmark.loc[0, "trainable_share"] == 1.0


def test_grpo_lora_on_the_tiny_model(project: Path) -> None:
    run_kedro(project, "run", "--pipelines=grpo_lora", tiny_overrides("lora", **{"training.learning_rate": 0.01}))
    checkpoint = project / "data/06_models/lora/checkpoint"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "merged/model.safetensors").is_file()
    report = json.loads((project / "data/08_reporting/lora/validation_report.json").read_text())
    assert report["adapter"] is True and report["merged_export"]["matches"] is True
    benchmark = pd.read_csv(project / "data/08_reporting/lora/benchmark.csv")
    assert benchmark.loc[0, "mode"] == "LoRA" and 0 < benchmark.loc[0, "trainable_share"] < 0.5


def test_seed_config_overlay_through_kedro(project: Path) -> None:
    result = run_kedro(
        project,
        "run",
        "--pipelines=grpo_debug",
        "--to-nodes=debug.train_grpo",
        "--params=debug.run.seed_config=configs/lfm2_350m_debug.yaml",
    )
    assert "total_episodes: 10 -> max_steps=3" in result.stdout + result.stderr
    timings = json.loads((project / "data/07_model_output/debug/training_timings.json").read_text())
    assert timings["steps"] == 3
    (run,) = mlflow_runs(project, "grpo_debug")
    assert run.data.tags["seed_config.num_mini_batches"].startswith("num_mini_batches: 2 -> steps_per_generation=2")


OUTPUT_DIR = "data/06_models/debug/trainer_output"


def signal_after_first_checkpoint(
    project: Path, params: str, signal_number: int = signal.SIGKILL, through: str = "pipe"
) -> tuple[int, str]:
    """Start ``kedro run --pipelines=grpo_debug`` and, once a checkpoint is complete, stop it; that checkpoint's step
    and what the process wrote to stderr (and, ``through="pipe"``, stdout).

    ``through``: "pipe" (read by the test) with ``signal_number`` sent to the process group; "tee"
    (``kedro run | tee log`` with stderr apart, as in a terminal) with ``signal_number`` sent to the group, ``tee``
    included, as Ctrl-C does; "terminal" (a pseudo-terminal is the run's controlling terminal) closed, which
    hangs it up: the kernel sends SIGHUP (``signal_number`` must say so) and later writes fail.
    """
    output_dir = project / OUTPUT_DIR
    command = [KEDRO, "run", "--pipelines=grpo_debug", params]
    terminal = tee = None
    if through == "terminal":
        terminal, tty = os.openpty()
        # setsid --ctty: a session of its own, whose controlling terminal is the pseudo-terminal.
        process = subprocess.Popen(["setsid", "--ctty", *command], cwd=project, stdin=tty, stdout=tty, stderr=tty)
        os.close(tty)
        shown, drained = bytearray(), threading.Event()  # drained, or the run blocks on a full terminal
        reader = threading.Thread(target=_drain, args=(terminal, shown, drained), daemon=True)
        reader.start()
    else:
        process = subprocess.Popen(
            command,
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if through == "tee" else subprocess.STDOUT,
            text=True,
            process_group=0,  # a group of its own, which tee joins, as a shell's job
        )
        if through == "tee":
            log = str(project / "tee.log")
            tee = subprocess.Popen(
                ["tee", log], stdin=process.stdout, stdout=subprocess.DEVNULL, process_group=process.pid
            )
            process.stdout.close()  # tee holds the only reader
            process.stdout = None
    deadline = time.monotonic() + 300
    while not complete_checkpoints(output_dir) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if terminal is not None:
        # The reader stops first: a read in progress would hold the terminal open past close(), delaying the hangup.
        drained.set()
        reader.join(timeout=10)
        os.close(terminal)
        process.wait(timeout=300)
        output = shown.decode(errors="replace")
    else:
        os.killpg(process.pid, signal_number)
        stdout, stderr = process.communicate(timeout=300)
        output = (stdout or "") + (stderr or "")
    if tee is not None:
        assert tee.wait(timeout=10) == -signal_number, "tee outlived the signal: its reader never went away"
    expected = -signal.SIGKILL if signal_number == signal.SIGKILL else 128 + signal_number
    assert process.returncode == expected, output[-3000:]
    saved = complete_checkpoints(output_dir)
    assert saved, "no complete checkpoint was written before the signal"
    step = int(saved[-1].name.split("-")[1])
    assert not (output_dir / RUN_FINISHED_MARKER).exists(), "training finished before it could be stopped"
    return step, output


def _drain(terminal: int, shown: bytearray, drained: threading.Event) -> None:
    while not drained.is_set():
        if select.select([terminal], [], [], 0.05)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the run ended
                return
            if not chunk:
                return
            shown += chunk


# Long enough to stop mid-run, short enough to finish soon; a short run's accuracy gain is not gated.
SHORT_RUN = f"--params=debug.training.max_steps=40,debug.training.save_steps=10,{NO_GATES}"


def test_ctrl_c_on_a_piped_run_is_recorded_as_interrupted_and_the_rerun_resumes(project: Path) -> None:
    """``kedro run | tee log`` and Ctrl-C: tee dies with the run, so the run's next writes to stdout fail; that must
    not turn the interruption into a silent exit 1 recorded FINISHED (as it did)."""
    params = SHORT_RUN
    output_dir = project / OUTPUT_DIR
    resumed_step, output = signal_after_first_checkpoint(project, params, signal.SIGINT, through="tee")
    # One instruction, the right one: no ERROR line, no Kedro `--from-nodes` advice, no traceback.
    last_line = output.rstrip().splitlines()[-1]
    assert re.fullmatch(
        r"kedro run interrupted by SIGINT at training step \d+ of 40\. Run the same command again: debug resumes "
        rf"training from {OUTPUT_DIR}/checkpoint-{resumed_step}\.",
        last_line,
    ), output[-3000:]
    log = (project / "logs/grpo_pipeline.log").read_text()
    assert "Traceback" not in output and "--from-nodes" not in log and "failed with error" not in log
    assert "train_grpo" in (project / "tee.log").read_text()
    (interrupted,) = mlflow_runs(project, "grpo_debug")
    # Recorded as what it was, not FINISHED (which compare_runs would take as a result).
    assert interrupted.info.status == "KILLED" and interrupted.data.tags["grpo.interrupted_by"] == "SIGINT"
    assert int(interrupted.data.tags["grpo.interrupted_at_step"]) >= resumed_step
    assert json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())["status"] == "KILLED"
    # MLflow's run list tells it from a failure: its name and tags say how it ended.
    stopped_at = interrupted.data.tags["grpo.interrupted_at_step"]
    assert interrupted.info.run_name == (
        f"grpo_debug · interrupted by SIGINT at training step {stopped_at} of 40 · training.max_steps=40 "
        "training.save_steps=10 validation.min_greedy_accuracy_gain=None validation.min_sampled_accuracy_gain=None"
    )
    assert interrupted.data.tags["grpo.validation"] == "KILLED"
    # A half-written checkpoint with a higher step (no completion marker) must never be picked.
    (output_dir / "checkpoint-39").mkdir()
    (output_dir / "checkpoint-39" / "config.json").write_text("{}")

    result = run_kedro(project, "run", "--pipelines=grpo_debug", params)
    assert "Resuming training from" in result.stdout + result.stderr
    assert "missing keys" not in result.stdout + result.stderr
    timings = json.loads((project / "data/07_model_output/debug/training_timings.json").read_text())
    assert timings["resumed_from_step"] == resumed_step
    assert timings["steps"] == 40 and timings["steps_this_run"] == 40 - resumed_step
    metrics = pd.read_csv(project / "data/07_model_output/debug/training_metrics.csv")
    assert metrics.dropna(subset=["reward"])["step"].tolist() == list(range(1, 41))  # eval rows aside
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["status"] == "NO GATE" and report["global_step"] == 40

    crashed, resumed = mlflow_runs(project, "grpo_debug")
    assert crashed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert resumed.data.tags["grpo.resumed_from_step"] == str(resumed_step)
    assert resumed.data.tags["grpo.resumed_from_mlflow_run"] == crashed.info.run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    history = client.get_metric_history(resumed.info.run_id, "reward")
    assert sorted({point.step for point in history}) == list(range(1, 41))


def test_closing_the_terminal_stops_after_a_checkpoint_and_is_recorded_as_interrupted(project: Path) -> None:
    """The terminal closes (SIGHUP, then writes to it fail): the run finishes its step, saves, and is recorded KILLED,
    where it used to die at once with its MLflow run left RUNNING."""
    params = "--params=debug.training.max_steps=150,debug.training.save_steps=10"
    step, _ = signal_after_first_checkpoint(project, params, signal.SIGHUP, through="terminal")
    (interrupted,) = mlflow_runs(project, "grpo_debug")
    assert interrupted.info.status == "KILLED" and interrupted.data.tags["grpo.interrupted_by"] == "SIGHUP"
    # Stopped gracefully: the step it reached is the checkpoint it saved on the way out.
    assert interrupted.data.tags["grpo.interrupted_at_step"] == str(step)
    RunLock(project / OUTPUT_DIR, "debug").check_free()


def test_a_checkpoint_the_disk_cannot_hold_stops_the_run_naming_its_folder(debug_project: Path) -> None:
    """A full disk while the trainer writes checkpoint-10, made here by a file-size limit on the run (prlimit, a new
    process): one message naming the folder, the half-written checkpoint never marked complete, the run FAILED.
    It used to end in a 100-line traceback from torch's archive writer."""
    result = subprocess.run(
        ["prlimit", "--fsize=2000000", KEDRO, "run", "--pipelines=grpo_debug", SHORT_RUN],
        cwd=debug_project,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )
    output_dir = debug_project / OUTPUT_DIR
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert (
        f"kedro run failed: writing checkpoint {OUTPUT_DIR}/checkpoint-10 failed at training step 10 (" in result.stderr
    ), result.stderr[-3000:]
    assert "so no run resumes from it" in result.stderr and "the same command trains afresh" in result.stderr
    assert (output_dir / "checkpoint-10").is_dir() and not complete_checkpoints(output_dir)
    (run,) = mlflow_runs(debug_project, "grpo_debug")
    assert run.info.status == "FAILED" and run.data.tags["grpo.outcome"] == "failed in debug.train_grpo"


@pytest.fixture
def tracking_server(debug_project: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``mlflow server`` on 127.0.0.1, which the project's runs track to (conf/local/mlflow.yml), as the docs
    advise for several machines."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = f"sqlite:///{tmp_path / 'server.db'}"
    options = ["--backend-store-uri", store, "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    server = subprocess.Popen(
        [str(Path(KEDRO).with_name("mlflow")), "server", *options, "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,  # with the uvicorn process it starts: signals go to the group
    )
    uri = f"http://127.0.0.1:{port}"
    mlflow_yml = (debug_project / "conf/base/mlflow.yml").read_text().replace("sqlite:///mlflow.db", uri)
    (debug_project / "conf/local/mlflow.yml").write_text(mlflow_yml)
    deadline = time.monotonic() + 120
    while not _answers(uri):
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield uri, server
    os.killpg(server.pid, signal.SIGCONT)
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def _answers(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow  # a real `mlflow server`: ~15 s to start
def test_a_tracking_server_that_stops_answering_stops_the_run_and_the_rerun_resumes_once_it_is_back(
    debug_project: Path, tracking_server: tuple[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared tracking server hangs mid-training (SIGSTOP: requests get no answer): the run stops after a complete
    checkpoint, with one message naming the server; a run while it hangs is refused at once; once it answers again
    the rerun resumes, and records how the stopped run ended, which that run could not. It used to retry each
    request for minutes, then blame the disk ("writing checkpoint ... failed") with the checkpoint left unmarked."""
    uri, server = tracking_server
    # MLflow's own settings, kept short here: one try of 3 s per request.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    output_dir = debug_project / OUTPUT_DIR
    params = f"--params=debug.training.max_steps=40,debug.training.save_steps=10,{NO_GATES}"

    def hang_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while not complete_checkpoints(output_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGSTOP)

    hanger = threading.Thread(target=hang_after_the_first_checkpoint, daemon=True)
    hanger.start()
    stopped = invoke_kedro(debug_project, "run", "--pipelines=grpo_debug", params)
    hanger.join()
    resumable = complete_checkpoints(output_dir)[-1]
    # (In process, stdout also holds the DEBUG records a terminal does not show: the traceback among them.)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert re.search(
        rf"kedro run failed: the MLflow tracking server {uri} stopped answering at training step \d+ \(no answer "
        rf"within 3 s, MLFLOW_HTTP_REQUEST_TIMEOUT\)\. Once the server answers, run the same command: debug resumes "
        rf"training from {OUTPUT_DIR}/{resumable.name}\.",
        stopped.stderr,
    ), stopped.stderr[-3000:]
    assert int(resumable.name.split("-")[1]) < 40

    started = time.monotonic()
    refused = invoke_kedro(debug_project, "run", "--pipelines=grpo_debug", params)
    assert refused.returncode == 1 and time.monotonic() - started < 60
    assert f"kedro run failed: The MLflow tracking server {uri} (server.mlflow_tracking_uri" in refused.stderr
    assert complete_checkpoints(output_dir)[-1] == resumable

    os.killpg(server.pid, signal.SIGCONT)
    resumed = run_kedro(debug_project, "run", "--pipelines=grpo_debug", "--to-nodes=debug.train_grpo", params)
    assert f"Resuming training from {OUTPUT_DIR}/{resumable.name}" in resumed.stdout + resumed.stderr
    client = MlflowClient(tracking_uri=uri)
    latest, lost = client.search_runs(
        [client.get_experiment_by_name("grpo_pipeline").experiment_id], order_by=["attributes.start_time DESC"]
    )
    assert latest.info.status == "FINISHED" and latest.data.tags["grpo.resumed_from_mlflow_run"] == lost.info.run_id
    # What the stopped run could not tell the server, its rerun did.
    assert lost.info.status == "FAILED" and lost.info.run_name == "grpo_debug · failed in debug.train_grpo · " + (
        "training.max_steps=40 training.save_steps=10 validation.min_greedy_accuracy_gain=None "
        "validation.min_sampled_accuracy_gain=None"
    )
    assert lost.data.tags["grpo.error"].startswith(f"the MLflow tracking server {uri} stopped answering at training")
    history = client.get_metric_history(latest.info.run_id, "reward")
    assert sorted({point.step for point in history}) == list(range(1, 41))


def test_a_changed_rerun_refuses_the_crashed_checkpoint_until_told_to_start_fresh(project: Path) -> None:
    params = "--params=debug.training.max_steps=150,debug.training.save_steps=10"
    signal_after_first_checkpoint(project, params)
    before = sorted(path.name for path in (project / OUTPUT_DIR).iterdir())

    refused = invoke_kedro(project, "run", "--pipelines=grpo_debug", params + ",debug.training.learning_rate=0.001")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "training.learning_rate: 0.0002 -> 0.001" in output
    assert "debug.run.resume_from_checkpoint=false" in output
    assert sorted(path.name for path in (project / OUTPUT_DIR).iterdir()) == before
    assert len(mlflow_runs(project, "grpo_debug")) == 1, "the refused run opened an MLflow run"

    fresh = ",debug.training.learning_rate=0.001,debug.run.resume_from_checkpoint=false"
    run_kedro(
        project, "run", "--pipelines=grpo_debug", "--to-nodes=debug.train_grpo", params.replace("150", "20") + fresh
    )
    crashed, latest = mlflow_runs(project, "grpo_debug")
    # The killed run died RUNNING; the next run of the variant found it through the lock file and closed it.
    assert crashed.info.status == "KILLED" and "grpo.interrupted_by" not in crashed.data.tags
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    rates = {point.value for point in client.get_metric_history(latest.info.run_id, "learning_rate")}
    assert rates == {0.001}
    assert "grpo.resumed_from_step" not in latest.data.tags and latest.data.tags["grpo.fingerprint"]


def test_a_second_run_of_a_running_variant_stops_at_once_and_writes_nothing(project: Path) -> None:
    first = subprocess.Popen(
        [KEDRO, "run", "--pipelines=grpo_debug", SHORT_RUN],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = project / OUTPUT_DIR / "run.lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and "mlflow_run_id" in lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    second = invoke_kedro(project, "run", "--pipelines=grpo_debug", "--params=debug.training.learning_rate=0.001")
    elapsed = time.monotonic() - started
    # Another variant at the same time, on the same mlflow.db: its own folders, its own run.
    other = run_kedro(
        project,
        "run",
        "--env=tiny",
        "--pipelines=grpo_full",
        "--to-nodes=full.train_grpo",
        "--params=full.warm_start=null,full.training.max_steps=4",
    )
    overlapped = first.poll() is None
    first_output, _ = first.communicate(timeout=600)
    assert second.returncode != 0 and elapsed < 10, elapsed
    assert f"Variant 'debug' is already running (pid {first.pid}" in second.stdout + second.stderr
    assert first.returncode == 0, first_output[-3000:]
    (run,) = mlflow_runs(project, "grpo_debug")
    assert run.info.status == "FINISHED" and run.data.params["debug.training.learning_rate"] == "0.0002"
    (full,) = mlflow_runs(project, "grpo_full")
    assert overlapped and full.info.status == "FINISHED", other.stdout[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(client.get_metric_history(full.info.run_id, "reward")) == 4
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["status"] == "NO GATE" and report["global_step"] == 40

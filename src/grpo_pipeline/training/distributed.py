"""Training on more than one process: the node writes a job, ``accelerate launch`` runs the worker, the node reads back.

Why a subprocess: a Kedro run is one Python process, while DDP, DeepSpeed and FSDP need one process per
device started by a launcher that sets up their process group. The job (the formatted training data,
every resolved parameter and the MLflow run to write to) goes to ``<output_dir>/launch/job.json``; each
rank of ``python -m grpo_pipeline.training.worker`` trains, and rank 0 writes the results into
``launch/result/`` (checkpoint through ``Trainer.save_model``, which gathers sharded weights, plus
metrics, timings and samples). The node returns them like the single-process path does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from trl import GRPOConfig

from grpo_pipeline.atomic import atomic_directory
from grpo_pipeline.config.schema import DistributedParams
from grpo_pipeline.interruption import GRACEFUL_SIGNALS, RunInterrupted
from grpo_pipeline.models.checkpoint import load_checkpoint
from grpo_pipeline.training.checkpoints import complete_checkpoints, read_marker
from grpo_pipeline.training.run import GrpoRun, TrainingRequest, TrainingResult, train
from grpo_pipeline.training.warm_start import check_held_out

logger = logging.getLogger(__name__)

LAUNCH_DIR = "launch"
JOB_FILE = "job.json"
RESULT_DIR = "result"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.csv"
TIMINGS_FILE = "timings.json"
SAMPLES_FILE = "completions.json"
TRAIN_DATA_FILE = "train_dataset.jsonl"


@dataclass(frozen=True)
class TrainingJob:
    """What the training processes read from ``job.json``: they cannot share memory with the Kedro process."""

    request: TrainingRequest
    mlflow_tracking_uri: str | None
    mlflow_run_id: str | None
    result_dir: str

    def write(self, launch_dir: Path) -> Path:
        payload = {
            "request": self.request.to_json(launch_dir / TRAIN_DATA_FILE),
            "mlflow_tracking_uri": self.mlflow_tracking_uri,
            "mlflow_run_id": self.mlflow_run_id,
            "result_dir": self.result_dir,
        }
        job_file = launch_dir / JOB_FILE
        job_file.write_text(json.dumps(payload, indent=2))
        return job_file

    @classmethod
    def read(cls, path: Path) -> TrainingJob:
        payload = json.loads(path.read_text())
        return cls(**{**payload, "request": TrainingRequest.from_json(payload["request"])})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_command(distributed: DistributedParams, training: GRPOConfig, job_file: Path) -> list[str]:
    """``accelerate launch`` for the worker.

    Without a config file it uses accelerate's torchrun launcher (``--multi_gpu``). On the CPU that is
    still the right one: ``accelerate launch --cpu --num_processes 2`` starts a *single* process unless
    MPI is installed (accelerate 1.x's simple launcher), whereas torchrun starts N processes and the
    trainer's ``use_cpu`` makes them a gloo process group (accelerate's MULTI_CPU).
    """
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(distributed.num_processes),
        "--num_machines",
        str(distributed.num_machines),
        "--machine_rank",
        str(distributed.machine_rank),
        "--main_process_port",
        str(distributed.main_process_port or free_port()),
    ]
    if distributed.main_process_ip:
        command += ["--main_process_ip", distributed.main_process_ip]
    if distributed.accelerate_config:
        command += ["--config_file", distributed.accelerate_config]
    else:
        command += ["--multi_gpu", "--mixed_precision", "bf16" if training.bf16 else "no", "--dynamo_backend", "no"]
    if training.use_cpu:
        per_machine = distributed.num_processes // distributed.num_machines
        threads = distributed.num_cpu_threads_per_process or max(1, (os.cpu_count() or 1) // per_machine)
        command += ["--num_cpu_threads_per_process", str(threads)]
    return [*command, "-m", "grpo_pipeline.training.worker", str(job_file)]


def launch_training(
    request: TrainingRequest, mlflow_tracking_uri: str | None, mlflow_run_id: str | None
) -> TrainingResult:
    """Train under ``accelerate launch`` with ``distributed.num_processes`` processes; same result as in-process.

    On more than one machine each machine's ``kedro run`` launches its share of the processes, and every
    machine saves the model and results on its own disk (``save_on_each_node``), so that each run goes on to
    validate and report as on one machine; only the main process writes MLflow records.
    """
    distributed = request.config.params.distributed
    if distributed.num_machines > 1:
        request = dataclasses.replace(request, config=request.config.replace_training(save_on_each_node=True))
    training = request.config.grpo_config
    launch_dir = Path(training.output_dir) / LAUNCH_DIR
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    job = TrainingJob(request, mlflow_tracking_uri, mlflow_run_id, result_dir=str(launch_dir / RESULT_DIR))
    job_file = job.write(launch_dir)
    command = launch_command(distributed, training, job_file)
    logger.info(
        "Training on %d processes (machine %d of %d): %s",
        distributed.num_processes,
        distributed.machine_rank,
        distributed.num_machines,
        " ".join(command),
    )
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        returncode = process.wait()
    except RunInterrupted as interrupted:
        # The training processes stop as this one would (SIGTERM, SIGHUP: after the current step and a checkpoint).
        graceful = interrupted.signal_number in GRACEFUL_SIGNALS
        process.send_signal(signal.SIGTERM if graceful else interrupted.signal_number)
        process.wait()
        saved = complete_checkpoints(training.output_dir)
        if not graceful or not saved:
            raise
        # They stopped at the step of their last checkpoint.
        step = int(read_marker(saved[-1])["global_step"])
        raise RunInterrupted(interrupted.signal_number, step, training.max_steps) from None
    if returncode != 0:
        raise RuntimeError(
            f"accelerate launch exited with {returncode}; the training processes' output is above. "
            f"The job it ran is {job_file}."
        )
    return read_results(Path(job.result_dir), request.export_merged)


def run_training(
    request: TrainingRequest, mlflow_tracking_uri: str | None, mlflow_run_id: str | None
) -> TrainingResult:
    """Train in this process, or under ``accelerate launch`` with more than one process or machine; first refuse
    a held-out set that a warm-started base model has trained on."""
    check_held_out(request.base_model_path, request.eval_dataset)
    if request.config.params.distributed.launches:
        return launch_training(request, mlflow_tracking_uri, mlflow_run_id)
    return train(request, mlflow_run_id).result(request.export_merged)


def write_results(result_dir: Path, model_dir: Path, run: GrpoRun) -> None:
    """Rank 0's half of the hand-over, once every rank has saved the model into ``model_dir``."""
    with atomic_directory(result_dir) as staging:
        checkpoint_dir = staging / CHECKPOINT_DIR
        shutil.move(model_dir, checkpoint_dir)
        # Trainer.save_model also pickles the training arguments; the project keeps checkpoints pickle-free.
        (checkpoint_dir / "training_args.bin").unlink(missing_ok=True)
        run.tokenizer.save_pretrained(checkpoint_dir)
        (checkpoint_dir / "trainer_state.json").write_text(json.dumps(run.trainer_state, indent=2))
        run.metrics.to_csv(staging / METRICS_FILE, index=False)
        (staging / TIMINGS_FILE).write_text(json.dumps(run.timings, indent=2))
        (staging / SAMPLES_FILE).write_text(json.dumps(run.trainer.completion_samples, indent=2))


def read_results(result_dir: Path, export_merged: bool) -> TrainingResult:
    if not (result_dir / TIMINGS_FILE).is_file():
        raise RuntimeError(f"accelerate launch finished but rank 0 left no results in {result_dir}")
    checkpoint = load_checkpoint(result_dir / CHECKPOINT_DIR)
    checkpoint.export_merged = export_merged
    return TrainingResult(
        checkpoint=checkpoint,
        metrics=pd.read_csv(result_dir / METRICS_FILE),
        timings=json.loads((result_dir / TIMINGS_FILE).read_text()),
        completion_samples=json.loads((result_dir / SAMPLES_FILE).read_text()),
    )

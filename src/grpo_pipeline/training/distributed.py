"""Training on more than one process: the node writes a job, ``accelerate launch`` runs the worker, the node reads back.

Why a subprocess: a Kedro run is one Python process, while DDP, DeepSpeed and FSDP need one process per
device started by a launcher that sets up their process group. The job (the formatted training data,
every resolved parameter and the MLflow run to write to) goes to ``<output_dir>/launch/job.json``; each
rank of ``python -m grpo_pipeline.training.worker`` trains, and rank 0 writes the results into
``launch/result/`` (checkpoint through ``Trainer.save_model``, which gathers sharded weights, plus
metrics, timings and samples). The node returns them like the single-process path does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from grpo_pipeline.atomic import atomic_directory
from grpo_pipeline.config.schema import DistributedParams, ModelParams, PeftParams, RewardParams, TrainingParams
from grpo_pipeline.io.checkpoint_dataset import HFCheckpoint, HFCheckpointDataset
from grpo_pipeline.training.run import TrainingRequest

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
    """Everything a training process needs, as JSON: it cannot share memory with the Kedro process."""

    train_dataset: str
    base_model_path: str
    model: dict[str, Any]
    peft: dict[str, Any] | None
    training: dict[str, Any]
    reward: dict[str, Any]
    seed: int
    seed_config_mapping: list[str]
    mlflow_tracking_uri: str | None
    mlflow_run_id: str | None
    result_dir: str

    @classmethod
    def read(cls, path: Path) -> TrainingJob:
        return cls(**json.loads(path.read_text()))

    def request(self) -> TrainingRequest:
        return TrainingRequest(
            train_dataset=pd.read_json(self.train_dataset, orient="records", lines=True, dtype=False),
            base_model_path=self.base_model_path,
            model=ModelParams.model_validate(self.model),
            peft=PeftParams.model_validate(self.peft) if self.peft else None,
            training=TrainingParams.model_validate(self.training),
            reward=RewardParams.model_validate(self.reward),
            seed=self.seed,
            seed_config_mapping=self.seed_config_mapping,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_command(distributed: DistributedParams, training: TrainingParams, job_file: Path) -> list[str]:
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
        "1",
        "--main_process_port",
        str(distributed.main_process_port or free_port()),
    ]
    if distributed.accelerate_config:
        command += ["--config_file", distributed.accelerate_config]
    else:
        command += ["--multi_gpu", "--mixed_precision", "bf16" if training.bf16 else "no", "--dynamo_backend", "no"]
    if training.use_cpu:
        threads = distributed.num_cpu_threads_per_process or max(1, (os.cpu_count() or 1) // distributed.num_processes)
        command += ["--num_cpu_threads_per_process", str(threads)]
    return [*command, "-m", "grpo_pipeline.training.worker", str(job_file)]


def launch_training(
    request: TrainingRequest,
    distributed: DistributedParams,
    mlflow_tracking_uri: str | None,
    mlflow_run_id: str | None,
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Train under ``accelerate launch`` with ``distributed.num_processes`` processes; same outputs as in-process."""
    launch_dir = Path(request.training.output_dir) / LAUNCH_DIR
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    train_file = launch_dir / TRAIN_DATA_FILE
    request.train_dataset.to_json(train_file, orient="records", lines=True, force_ascii=False)
    job = TrainingJob(
        train_dataset=str(train_file),
        base_model_path=request.base_model_path,
        model=request.model.model_dump(),
        peft=request.peft.model_dump() if request.peft else None,
        training=request.training.model_dump(),
        reward=request.reward.model_dump(),
        seed=request.seed,
        seed_config_mapping=request.seed_config_mapping,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_run_id=mlflow_run_id,
        result_dir=str(launch_dir / RESULT_DIR),
    )
    job_file = launch_dir / JOB_FILE
    job_file.write_text(json.dumps(asdict(job), indent=2))
    command = launch_command(distributed, request.training, job_file)
    logger.info("Training on %d processes: %s", distributed.num_processes, " ".join(command))
    completed = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"accelerate launch exited with {completed.returncode}; the training processes' output is above. "
            f"The job it ran is {job_file}."
        )
    return read_results(Path(job.result_dir), request.peft)


def write_results(
    result_dir: Path,
    model_dir: Path,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    metrics: pd.DataFrame,
    timings: dict[str, Any],
    samples: list[dict[str, Any]],
) -> None:
    """Rank 0's half of the hand-over, once every rank has saved the model into ``model_dir``."""
    with atomic_directory(result_dir) as staging:
        checkpoint_dir = staging / CHECKPOINT_DIR
        shutil.move(model_dir, checkpoint_dir)
        # Trainer.save_model also pickles the training arguments; the project keeps checkpoints pickle-free.
        (checkpoint_dir / "training_args.bin").unlink(missing_ok=True)
        tokenizer.save_pretrained(checkpoint_dir)
        (checkpoint_dir / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        metrics.to_csv(staging / METRICS_FILE, index=False)
        (staging / TIMINGS_FILE).write_text(json.dumps(timings, indent=2))
        (staging / SAMPLES_FILE).write_text(json.dumps(samples, indent=2))


def read_results(
    result_dir: Path, peft_params: PeftParams | None
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    if not (result_dir / TIMINGS_FILE).is_file():
        raise RuntimeError(f"accelerate launch finished but rank 0 left no results in {result_dir}")
    checkpoint = HFCheckpointDataset(path=str(result_dir / CHECKPOINT_DIR)).load()
    checkpoint.export_merged = bool(peft_params and peft_params.merge_and_export)
    return (
        checkpoint,
        pd.read_csv(result_dir / METRICS_FILE),
        json.loads((result_dir / TIMINGS_FILE).read_text()),
        json.loads((result_dir / SAMPLES_FILE).read_text()),
    )

"""Training on two processes through ``accelerate launch`` (gloo on the CPU), and the shipped accelerate configs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from trl import GRPOConfig

from grpo_pipeline.config.schema import DistributedParams, parse_section
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.sandbox import params_option
from grpo_pipeline.training.distributed import free_port, launch_command
from tests.conftest import KEDRO, PROJECT_ROOT, copy_project, invoke_kedro, mlflow_runs, run_kedro
from tests.test_training_and_validation import training_params

TWO_PROCESSES = {
    "distributed.num_processes": 2,
    # The same global batch as the single-process debug run: 2 processes x 16.
    "training.per_device_train_batch_size": 16,
    "training.max_steps": 40,
    "validation.min_greedy_accuracy_gain": "null",  # a short run: its gain is checked below
    "validation.min_sampled_accuracy_gain": "null",
}


@pytest.fixture(scope="module")
def two_process_run(
    tmp_path_factory: pytest.TempPathFactory, debug_run: tuple[Path, object]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = copy_project(tmp_path_factory.mktemp("distributed"), models_from=debug_run[0])
    return project, run_kedro(project, "run", "--pipelines=grpo_debug", params_option("debug", TWO_PROCESSES))


def test_two_process_cpu_run_trains_with_world_size_two(two_process_run: tuple[Path, object]) -> None:
    project, result = two_process_run
    assert "Training on 2 processes" in result.stdout + result.stderr
    state = json.loads((project / "data/06_models/debug/checkpoint/trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert state["distributed_type"] == "MULTI_CPU"
    assert state["global_step"] == 40
    # Each optimizer step saw both processes' completions: 2 x 16 per step, prompts and completions.
    assert state["train_batch_size"] == 16
    timings = json.loads((project / "data/06_models/debug/trainer_output/launch/result/timings.json").read_text())
    assert timings["world_size"] == 2 and timings["steps_this_run"] == 40


def test_two_process_checkpoint_validates(two_process_run: tuple[Path, object]) -> None:
    project, _ = two_process_run
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    # validate_checkpoint reloaded the saved weights, which answer held-out problems more often correctly.
    assert report["accuracy_gain"]["sampled"] >= 0.05, report["accuracy_gain"]
    checkpoint = project / "data/06_models/debug/checkpoint"
    assert (checkpoint / "model.safetensors").is_file()
    assert not list(checkpoint.glob("*.bin")), "checkpoints stay pickle-free"


def test_only_rank_zero_writes_mlflow_and_recovery_markers(two_process_run: tuple[Path, object]) -> None:
    project, _ = two_process_run
    (run,) = mlflow_runs(project)
    history = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_metric_history(run.info.run_id, "reward")
    # One point per step: a second writer would have doubled them.
    assert sorted(point.step for point in history) == list(range(1, 41))
    assert run.info.status == "FINISHED"
    output = project / "data/06_models/debug/trainer_output"
    markers = [json.loads(path.read_text()) for path in output.glob("checkpoint-*/grpo_checkpoint_complete.json")]
    assert markers and all(marker["mlflow_run_id"] == run.info.run_id for marker in markers)
    assert (output / "training_finished.json").is_file()


@pytest.mark.parametrize(
    ("name", "distributed_type"),
    [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"), ("fsdp", "FSDP")],
)
def test_shipped_accelerate_configs_load(name: str, distributed_type: str) -> None:
    config = load_config_from_file(str(PROJECT_ROOT / f"conf/gpu/accelerate/{name}.yaml"))
    assert config.distributed_type.value == distributed_type
    assert config.mixed_precision == "bf16" and config.num_machines == 1


def test_launch_command_uses_torchrun_on_cpu_and_the_config_file_when_given(tmp_path: Path) -> None:
    training = GRPOConfig(**training_params(tmp_path))
    cpu = launch_command(DistributedParams(num_processes=2), training, tmp_path / "job.json")
    assert cpu[cpu.index("--num_processes") + 1] == "2" and "--multi_gpu" in cpu and "--cpu" not in cpu
    assert cpu[-3:] == ["-m", "grpo_pipeline.training.worker", str(tmp_path / "job.json")]
    zero3 = launch_command(
        DistributedParams(num_processes=4, accelerate_config="conf/gpu/accelerate/zero3.yaml"), training, tmp_path
    )
    assert zero3[zero3.index("--config_file") + 1] == "conf/gpu/accelerate/zero3.yaml"
    assert "--multi_gpu" not in zero3


@pytest.mark.kedro_run
def test_missing_accelerate_config_fails_before_anything_runs(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    options = {"distributed.num_processes": 2, "distributed.accelerate_config": "conf/gpu/nope.yaml"}
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug", params_option("debug", options))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        "debug.distributed.accelerate_config" in output and "conf/gpu/accelerate/{ddp,zero2,zero3,fsdp}.yaml" in output
    )
    assert not (project / "data/06_models/debug").exists()


def test_two_machines_of_one_process_each_train_and_validate_on_localhost(
    tmp_path: Path, debug_run: tuple[Path, object]
) -> None:
    """Two `kedro run`s, as on two machines with their own disks: machine ranks 0 and 1 meet at 127.0.0.1."""
    port = free_port()
    machines = [copy_project(tmp_path / f"machine{rank}", models_from=debug_run[0]) for rank in (0, 1)]
    options = {
        "distributed.num_processes": 2,
        "distributed.num_machines": 2,
        "distributed.main_process_ip": "127.0.0.1",
        "distributed.main_process_port": port,
        "distributed.num_cpu_threads_per_process": 1,
        "training.per_device_train_batch_size": 16,
        "training.max_steps": 6,
        "validation.min_greedy_accuracy_gain": "null",
        "validation.min_sampled_accuracy_gain": "null",
    }

    def command(rank: int) -> list[str]:
        return ["run", "--pipelines=grpo_debug", params_option("debug", {**options, "distributed.machine_rank": rank})]

    # Machine 1 in a process of its own, machine 0 in this one, at the same time.
    machine_1 = subprocess.Popen(
        [KEDRO, *command(1)],
        cwd=machines[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    machine_0 = invoke_kedro(machines[0], *command(0))
    output_1 = machine_1.communicate(timeout=600)[0]
    assert machine_0.returncode == 0, (machine_0.stdout + machine_0.stderr)[-4000:]
    assert machine_1.returncode == 0, output_1[-4000:]
    for rank, project in enumerate(machines):
        state = json.loads((project / "data/06_models/debug/checkpoint/trainer_state.json").read_text())
        assert state["world_size"] == 2 and state["global_step"] == 6, rank
        report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
        assert report["global_step"] == 6, rank
    # Both machines hold the same trained weights (DDP keeps the replicas identical), each on its own disk.
    weights = [load_file(project / "data/06_models/debug/checkpoint/model.safetensors") for project in machines]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    # Only the main process writes MLflow: machine 1's run holds its parameters and reports, no step metrics.
    histories = [
        MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_metric_history(
            mlflow_runs(project)[0].info.run_id, "reward"
        )
        for project in machines
    ]
    assert [len(history) for history in histories] == [6, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_processes": 2, "num_machines": 2, "main_process_port": 29500}, "needs main_process_ip and"),
        ({"num_processes": 3, "num_machines": 2, "main_process_ip": "10.0.0.1", "main_process_port": 1}, "multiple of"),
        (
            {"num_processes": 2, "num_machines": 2, "machine_rank": 2, "main_process_ip": "h", "main_process_port": 1},
            "must be < num_machines 2",
        ),
    ],
)
def test_machines_that_cannot_meet_are_parameter_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_section(DistributedParams, options, "full.distributed")


def test_each_machine_launches_its_rank_towards_the_main_machine(tmp_path: Path) -> None:
    distributed = DistributedParams(
        num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29500
    )
    training = GRPOConfig(**training_params(tmp_path))
    command = launch_command(distributed, training, tmp_path / "job.json")
    options = dict(zip(command[3::2], command[4::2], strict=False))
    assert (options["--num_processes"], options["--num_machines"], options["--machine_rank"]) == ("16", "2", "1")
    assert (options["--main_process_ip"], options["--main_process_port"]) == ("10.0.0.1", "29500")

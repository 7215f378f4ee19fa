"""Shared fixtures. Pipeline runs happen in a copy of the project so the checkout stays clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from grpo_pipeline import sandbox
from grpo_pipeline.config.schema import TinyModelParams
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.pipelines.grpo.nodes import format_prompts

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
# --params for a grpo_debug run too short to reach the variant's accuracy gates.
NO_GATES = "debug.validation.min_greedy_accuracy_gain=null,debug.validation.min_sampled_accuracy_gain=null"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def copy_project(destination: Path) -> Path:
    return sandbox.copy_project(PROJECT_ROOT, destination)


def invoke_kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``kedro ARGS`` in ``project`` as a user would type it, without standard input."""
    return subprocess.run(
        [KEDRO, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Like :func:`invoke_kedro`, failing the test with kedro's output when the command fails."""
    result = invoke_kedro(project, *args, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"kedro {' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def mlflow_runs(project: Path, run_name: str | None = None) -> list[Run]:
    """Runs in the project copy's MLflow store (all experiments), oldest first; none when nothing was tracked."""
    if not (project / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(
        experiment_ids,
        filter_string=f"attributes.run_name = '{run_name}'" if run_name else "",
        order_by=["attributes.start_time"],
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny", TinyModelParams())


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One real ``kedro run --pipelines=grpo_debug`` in a project copy, shared by the end-to-end tests."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    return project, run_kedro(project, "run", "--pipelines=grpo_debug")


@pytest.fixture(scope="session")
def datasets(tiny_model_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formatted train/eval prompts (single-digit additions) for node-level training tests."""
    questions = [(f"What is {a} + {b}?", str(a + b)) for a in range(6) for b in range(6)]
    raw = pd.DataFrame(
        {"prompt": [[{"role": "user", "content": q}] for q, _ in questions], "answer": [a for _, a in questions]}
    )
    train, evaluation, _ = format_prompts(
        raw.iloc[8:], raw.iloc[:8], str(tiny_model_dir), {"name_or_path": "x"}, {"max_prompt_length": 64}
    )
    return train, evaluation

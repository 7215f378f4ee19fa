"""Shared fixtures. Pipeline runs happen in a copy of the project so the checkout stays clean.

``kedro`` commands run in this process (:func:`invoke_kedro`): the project's own CLI through click's test
runner, its error formatting included, without paying a new interpreter's start-up (~8 s) per command.
A test that is about the command line itself, or needs a process to kill or to run beside another,
starts a real ``kedro`` process (:func:`invoke_kedro_subprocess`) and is marked ``subprocess``.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI
from mlflow.entities import Run
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistrySqlStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingSqlStore
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

from grpo_pipeline import sandbox
from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.run_config import RunConfig, resolve_run_config
from grpo_pipeline.config.schema import FormattingParams, TinyModelParams
from grpo_pipeline.models.loading import load_tokenizer
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.prompts import format_splits
from grpo_pipeline.variants import PIPELINE_TAG

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
# --params for a grpo_debug run too short to reach the variant's accuracy gates.
NO_GATES = "debug.validation.min_greedy_accuracy_gain=null,debug.validation.min_sampled_accuracy_gain=null"
# What a grpo_debug run builds before GRPO and reuses while its fingerprint matches (same model, data, seed).
DEBUG_MODELS = ("data/06_models/debug/base_model", "data/06_models/debug/warm_start")

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


# What a test pays for through these shared fixtures, marked from the fixtures it uses (directly or through
# another fixture), so that `make test-fast` never starts them by accident.
FIXTURE_MARKERS = {
    "debug_run": ("subprocess", "kedro_run", "trainer"),
    "viz_build": ("subprocess",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                for marker in markers:
                    item.add_marker(marker)


def copy_project(destination: Path, models_from: Path | None = None) -> Path:
    """A runnable copy of the project; with ``models_from``, that project's tiny model and warm start too,
    which the copy's runs reuse when their fingerprints match (and rebuild when they do not)."""
    project = sandbox.copy_project(PROJECT_ROOT, destination)
    for model in DEBUG_MODELS if models_from else ():
        shutil.copytree(models_from / model, project / model)
    return project


@contextmanager
def inside(project: Path) -> Iterator[None]:
    """This process working in ``project`` as a ``kedro`` process started there would, and left as that
    process's exit would leave things: the MLflow runs kedro-mlflow leaves on the thread's stack are ended as
    MLflow's exit handler ends them, and the project's ``src`` (a user's reward module, say) leaves
    ``sys.path`` and ``sys.modules``. MLflow caches its stores and database engines by URI, and the
    project's ``sqlite:///mlflow.db`` is relative: the caches are emptied so that the project's own store
    is the one opened, as in a new process."""
    cwd, path, modules = Path.cwd(), list(sys.path), set(sys.modules)
    forget_mlflow_stores()
    os.chdir(project)
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        os.chdir(cwd)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if str(project) in str(getattr(sys.modules[name], "__file__", None) or ""):
                del sys.modules[name]


def invoke_kedro(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kedro ARGS`` in ``project``, run :func:`inside` it in this process as the ``kedro`` command runs it:
    Kedro's CLI (the project's ``run`` with its one-block errors) through click's test runner."""
    # What the command logs, whichever handlers Kedro's logging configuration gives each logger.
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    try:
        with inside(project):
            result = CliRunner().invoke(KedroCLI(project), list(args), catch_exceptions=True)
    finally:
        logging.getLogger().removeHandler(handler)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["kedro", *args], result.exit_code, result.stdout + logs.getvalue(), stderr)


def forget_mlflow_stores() -> None:
    for registry in (TrackingStoreRegistry, ModelRegistryStoreRegistry):
        registry._get_store_with_resolved_uri.cache_clear()
    for store in (TrackingSqlStore, RegistrySqlStore):
        for engine in store._engine_map.values():
            engine.dispose()
        store._engine_map.clear()


def run_kedro(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Like :func:`invoke_kedro`, failing the test with kedro's output when the command fails."""
    return _succeeded(invoke_kedro(project, *args), args)


def invoke_kedro_subprocess(
    project: Path, *args: str, timeout: int = 600, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """``kedro ARGS`` in ``project`` as a user types it: a new process, without standard input, its output piped
    (Kedro's log lines are as wide as ``columns``)."""
    return subprocess.run(
        [KEDRO, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def run_kedro_subprocess(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return _succeeded(invoke_kedro_subprocess(project, *args, timeout=timeout), args)


def _succeeded(result: subprocess.CompletedProcess[str], args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        pytest.fail(
            f"kedro {' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def mlflow_runs(project: Path, pipeline: str | None = None) -> list[Run]:
    """Runs (of ``pipeline``) in the project copy's MLflow store (all experiments), oldest first; none when nothing
    was tracked."""
    if not (project / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{PIPELINE_TAG}` = '{pipeline}'" if pipeline else "",
        order_by=["attributes.start_time"],
    )


def greedy_answers(model: Any, tokenizer: Any, prompt_texts: list[str], max_new_tokens: int) -> list[str]:
    """What ``model`` answers to templated prompts with plain ``transformers`` greedy decoding, one at a time and
    decoded as the rewards read it: an account of the model that owes nothing to the project's generation."""
    answers = []
    for text in prompt_texts:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        output = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        answers.append(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True))
    return answers


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny", TinyModelParams())


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One real ``kedro run --pipelines=grpo_debug`` as a user types it (a new process, the full 150 steps),
    shared by the end-to-end tests; its tiny model and warm start seed :func:`debug_project`."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    return project, run_kedro_subprocess(project, "run", "--pipelines=grpo_debug")


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made and no runs: creating them costs every new store ~1.5 s."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    forget_mlflow_stores()
    return path


@pytest.fixture
def debug_project(tmp_path: Path, debug_run: tuple[Path, object], empty_mlflow_store: Path) -> Path:
    """A fresh project copy holding the shared debug run's tiny model and warm start, so that a run of the
    shipped task trains GRPO at once instead of building both again, and an MLflow store with no runs yet."""
    project = copy_project(tmp_path / "project", models_from=debug_run[0])
    shutil.copy2(empty_mlflow_store, project / "mlflow.db")
    return project


@pytest.fixture(scope="session")
def viz_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with ``kedro viz build``'s static site in ``build/``, as the command writes it."""
    project = copy_project(tmp_path_factory.mktemp("viz"))
    run_kedro_subprocess(project, "viz", "build")
    return project


@pytest.fixture(scope="session")
def datasets(tiny_model_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formatted train/eval prompts (single-digit additions) for node-level training tests."""
    questions = [(f"What is {a} + {b}?", str(a + b)) for a in range(6) for b in range(6)]
    raw = pd.DataFrame(
        {"prompt": [[{"role": "user", "content": q}] for q, _ in questions], "answer": [a for _, a in questions]}
    )
    tokenizer = load_tokenizer(tiny_model_dir)
    train, evaluation, _ = format_splits(raw.iloc[8:], raw.iloc[:8], tokenizer, FormattingParams(max_prompt_length=64))
    return train, evaluation


_DEBUG_PARAMETERS: dict[str, Any] = {}


def variant_config(**sections: Any) -> RunConfig:
    """The shipped debug variant's run configuration with whole ``sections`` replaced (no warm start, no accuracy
    reward unless given), as a node receives it."""
    if not _DEBUG_PARAMETERS:
        _DEBUG_PARAMETERS.update(load_parameters(PROJECT_ROOT / "conf", "base")["debug"])
    validation = {"max_new_tokens": _DEBUG_PARAMETERS["validation"]["max_new_tokens"]}
    return resolve_run_config({**_DEBUG_PARAMETERS, "warm_start": None, "validation": validation, **sections}, "debug")

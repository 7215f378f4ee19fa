"""A run's fingerprint: what decides the weights a training run produces.

Written into every recovery checkpoint's marker and the final checkpoint's trainer state, and tagged on
the MLflow run. ``resume_from_checkpoint: auto`` resumes only a checkpoint whose fingerprint matches the
new run's; otherwise the run stops before loading anything, naming what differs (old -> new).
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.config.schema import ModelParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.fingerprinted import differences

# GRPOConfig fields that say where and how often to write or log, which trackers see the run, or how to
# reach a server: not what is learned. Evaluation settings stay in: evaluating consumes random numbers.
NOT_LEARNING = frozenset(
    {
        "output_dir",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "log_completions",
        "num_completions_to_print",
        "log_unique_prompts",
        "log_completions_hub_repo",
        "disable_tqdm",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "trackio_bucket_id",
        "trackio_static_space_id",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_on_each_node",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "vllm_server_base_url",
        "vllm_server_host",
        "vllm_server_port",
        "vllm_server_timeout",
    }
)
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate")
# How long to train and how often to evaluate: in the fingerprint, but a checkpoint of the same run with other values
# resumes (training longer, or evaluating more often, continues that run), the change logged and tagged.
HOW_LONG = frozenset(
    f"training.{name}" for name in ("max_steps", "num_train_epochs", "eval_strategy", "eval_steps", "eval_delay")
)


class ResumeMismatchError(ProjectError, RuntimeError):
    """The checkpoint ``resume_from_checkpoint: auto`` would continue was written by a different run."""


def _flat(prefix: str, values: dict[str, Any] | None) -> dict[str, Any]:
    if values is None:
        return {prefix: None}
    return {f"{prefix}.{key}": value for key, value in values.items()}


def _file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def data_sha256(train_dataset: pd.DataFrame) -> str:
    """A hash of the formatted training data, rows in order."""
    return hashlib.sha256(train_dataset.to_json(orient="records", lines=True).encode()).hexdigest()[:16]


def model_identity(model: ModelParams) -> dict[str, Any]:
    """What names the starting weights: id or path, revision, dtype, config hash, and what the project built it from."""
    return {
        "model.name_or_path": model.name_or_path,
        "model.revision": model.revision,
        "model.dtype": model.dtype,
        "model.config_sha256": _file_sha256(Path(model.name_or_path) / "config.json"),
        **_flat("model.build_tiny", model.build_tiny.model_dump() if model.build_tiny else None),
        # Only when set, so that the checkpoints of runs from before the option still resume.
        **(_flat("model.from_gguf", model.from_gguf.identity()) if model.from_gguf else {}),
    }


def package_versions() -> dict[str, str | None]:
    return {f"versions.{package}": _version(package) for package in PACKAGES}


def run_fingerprint(config: RunConfig, train_dataset: pd.DataFrame | None = None) -> dict[str, Any]:
    """Flat ``{name: value}``: learning parameters, model identity, data hash (when given) and package versions.
    Of the ``run`` section only the rollout, the tools and the environment count: the rest says how the run is
    driven, not what it learns."""
    params = config.params
    learning = params.training.model_dump(exclude=set(NOT_LEARNING))
    return {
        **model_identity(params.model),
        **_flat("warm_start", params.warm_start.model_dump() if params.warm_start else None),
        **_flat("peft", params.peft.config_values() if params.peft else None),
        **_flat("training", learning),
        "run.rollout_func": params.run.rollout_func,
        # Only when set, so that a checkpoint of a run without tools still resumes.
        **({"run.tools": params.run.tools} if params.run.tools else {}),
        **({"run.environment": params.run.environment} if params.run.environment else {}),
        "reward.functions": params.reward.model_dump()["functions"],
        "reward.weights": config.rewards.weights,
        "reward.models": [
            {**entry.model_dump(), "config_sha256": _file_sha256(Path(entry.name_or_path) / "config.json")}
            for entry in params.reward.models
        ],
        "seed": params.seed,
        **({"data.sha256": data_sha256(train_dataset)} if train_dataset is not None else {}),
        **package_versions(),
    }


def check_resume(checkpoint: Path, recorded: dict[str, Any] | None, current: dict[str, Any], prefix: str) -> list[str]:
    """Refuse to auto-resume ``checkpoint`` unless its recorded fingerprint matches ``current`` (entries it has) but
    for how long to train and how often to evaluate (:data:`HOW_LONG`); those differences (old -> new), if any."""
    learning = {key: value for key, value in current.items() if key not in HOW_LONG}
    length = {key: value for key, value in current.items() if key in HOW_LONG}
    if recorded is None:
        changed = ["the checkpoint records no run fingerprint (written by an older grpo-pipeline)"]
    else:
        changed = differences(recorded, learning)
    if changed:
        raise ResumeMismatchError(
            f"Not resuming {checkpoint}: it was written by a run with other settings "
            f"({prefix}.resume_from_checkpoint is 'auto'). What differs (old -> new):\n  - "
            + "\n  - ".join(changed)
            + f"\nEither start fresh with --params={prefix}.resume_from_checkpoint=false (the old recovery "
            "checkpoints are then removed), or rerun with the old values to continue that run."
        )
    return differences(recorded or {}, length)

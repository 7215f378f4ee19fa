"""The run fingerprint decides which checkpoint an automatic resume may continue."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from grpo_pipeline.config.trl_config import config_fields
from grpo_pipeline.training.checkpoints import write_marker
from grpo_pipeline.training.fingerprint import HOW_LONG, NOT_LEARNING, ResumeMismatchError
from grpo_pipeline.training.run import TrainingRequest, checked_resume_checkpoint
from tests.test_training_and_validation import run_config


def request(
    output_dir: Path,
    train_dataset: pd.DataFrame,
    run: dict[str, Any] | None = None,
    model: str = "x",
    **training: Any,
) -> TrainingRequest:
    config = run_config(output_dir, {"functions": ["accuracy", "format"]}, run=run, save_strategy="steps", **training)
    if model != "x":
        params = config.params.model_copy(
            update={"model": config.params.model.model_copy(update={"name_or_path": model})}
        )
        config = type(config)(config.variant, params)
    return TrainingRequest(train_dataset, "x", config)


@pytest.fixture
def crashed(tmp_path: Path, datasets: Any) -> tuple[Path, TrainingRequest]:
    """A crashed run's complete checkpoint-3, written by ``request(tmp_path, train)``."""
    crashed_request = request(tmp_path, datasets[0])
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    write_marker(folder, 3, None, crashed_request.fingerprint())
    return folder, crashed_request


@pytest.mark.trainer
def test_the_same_run_resumes_its_checkpoint(crashed: tuple[Path, TrainingRequest]) -> None:
    folder, same = crashed
    assert checked_resume_checkpoint(same, same.fingerprint(), None) == folder


@pytest.mark.trainer
def test_fixed_data_does_not_resume_the_checkpoint_trained_on_the_old(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any
) -> None:
    fixed = request(tmp_path, datasets[0].assign(answer=datasets[0]["answer"].str.replace("1", "7")))
    with pytest.raises(ResumeMismatchError, match=r"(?s)Not resuming .*checkpoint-3.*- data\.sha256: '[0-9a-f]+' ->"):
        checked_resume_checkpoint(fixed, fixed.fingerprint(), None)


@pytest.mark.trainer
def test_another_model_does_not_resume(crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any) -> None:
    other = request(tmp_path, datasets[0], model="org/other-model")
    with pytest.raises(ResumeMismatchError, match=r"model\.name_or_path: 'x' -> 'org/other-model'"):
        checked_resume_checkpoint(other, other.fingerprint(), None)


@pytest.mark.trainer
def test_a_named_checkpoint_resumes_and_logs_what_differs(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder, _ = crashed
    named = request(tmp_path, datasets[0], {"resume_from_checkpoint": str(folder)}, learning_rate=1e-4)
    with caplog.at_level(logging.WARNING):
        assert checked_resume_checkpoint(named, named.fingerprint(), None) == folder
    assert "training.learning_rate: 0.003 -> 0.0001" in caplog.text


@pytest.mark.trainer
def test_trackers_and_logging_do_not_block_a_resume_but_a_custom_rollout_does(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any
) -> None:
    folder, _ = crashed
    logged = request(tmp_path, datasets[0], report_to=["tensorboard"], logging_steps=5, run_name="again")
    assert checked_resume_checkpoint(logged, logged.fingerprint(), None) == folder
    rollout = {"rollout_func": "grpo_pipeline.training.rollouts:generate_rollout"}
    rolled = request(tmp_path, datasets[0], rollout)
    with pytest.raises(ResumeMismatchError, match=r"run\.rollout_func: None -> 'grpo_pipeline\.training"):
        checked_resume_checkpoint(rolled, rolled.fingerprint(), None)


@pytest.mark.trainer
def test_training_longer_or_evaluating_more_often_resumes_and_says_so(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder, crashed_request = crashed
    steps = crashed_request.config.grpo_config.max_steps
    longer = request(tmp_path, datasets[0], max_steps=steps * 2, eval_strategy="steps", eval_steps=2)
    with caplog.at_level(logging.WARNING):
        assert checked_resume_checkpoint(longer, longer.fingerprint(), None) == folder
    assert f"training.max_steps: {steps} -> {steps * 2}" in caplog.text and "training.eval_steps" in caplog.text
    # Anything else that changes what is learned still stops the resume, even beside a longer run.
    changed = request(tmp_path, datasets[0], max_steps=steps * 2, learning_rate=1e-4)
    with pytest.raises(ResumeMismatchError, match=r"training\.learning_rate: 0\.003 -> 0\.0001") as error:
        checked_resume_checkpoint(changed, changed.fingerprint(), None)
    assert "max_steps" not in str(error.value)


def test_every_field_left_out_of_the_fingerprint_is_a_grpo_config_field() -> None:
    assert set(NOT_LEARNING) <= set(config_fields("GRPOConfig"))
    assert {name.removeprefix("training.") for name in HOW_LONG} <= set(config_fields("GRPOConfig"))

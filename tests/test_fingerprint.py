"""The run fingerprint decides which checkpoint an automatic resume may continue."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from grpo_pipeline.config.schema import ModelParams, RewardParams, TrainingParams
from grpo_pipeline.training.checkpoints import write_marker
from grpo_pipeline.training.fingerprint import ResumeMismatchError
from grpo_pipeline.training.run import TrainingRequest, checked_resume_checkpoint
from tests.test_training_and_validation import training_params


def request(output_dir: Path, train_dataset: pd.DataFrame, **training: Any) -> TrainingRequest:
    return TrainingRequest(
        train_dataset=train_dataset,
        base_model_path="x",
        model=ModelParams(name_or_path="x"),
        peft=None,
        training=TrainingParams.model_validate(training_params(output_dir, save_strategy="steps", **training)),
        reward=RewardParams(functions=["accuracy", "format"]),
        seed=0,
    )


@pytest.fixture
def crashed(tmp_path: Path, datasets: Any) -> tuple[Path, TrainingRequest]:
    """A crashed run's complete checkpoint-3, written by ``request(tmp_path, train)``."""
    crashed_request = request(tmp_path, datasets[0])
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    write_marker(folder, 3, None, crashed_request.fingerprint())
    return folder, crashed_request


def test_the_same_run_resumes_its_checkpoint(crashed: tuple[Path, TrainingRequest]) -> None:
    folder, same = crashed
    assert checked_resume_checkpoint(same, same.fingerprint(), None) == folder


def test_fixed_data_does_not_resume_the_checkpoint_trained_on_the_old(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any
) -> None:
    fixed = request(tmp_path, datasets[0].assign(answer=datasets[0]["answer"].str.replace("1", "7")))
    with pytest.raises(ResumeMismatchError, match=r"(?s)Not resuming .*checkpoint-3.*- data\.sha256: '[0-9a-f]+' ->"):
        checked_resume_checkpoint(fixed, fixed.fingerprint(), None)


def test_another_model_does_not_resume(crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any) -> None:
    other = request(tmp_path, datasets[0])
    other = TrainingRequest(**{**other.__dict__, "model": ModelParams(name_or_path="org/other-model")})
    with pytest.raises(ResumeMismatchError, match=r"model\.name_or_path: 'x' -> 'org/other-model'"):
        checked_resume_checkpoint(other, other.fingerprint(), None)


def test_a_named_checkpoint_resumes_and_logs_what_differs(
    crashed: tuple[Path, TrainingRequest], tmp_path: Path, datasets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder, _ = crashed
    named = request(tmp_path, datasets[0], learning_rate=1e-4, resume_from_checkpoint=str(folder))
    with caplog.at_level(logging.WARNING):
        assert checked_resume_checkpoint(named, named.fingerprint(), None) == folder
    assert "training.learning_rate: 0.003 -> 0.0001" in caplog.text

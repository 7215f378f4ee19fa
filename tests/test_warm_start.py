"""The supervised warm start: trl.SFTTrainer on the training split's solved examples, reused while nothing changed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.config.schema import ModelParams, VariantParams, WarmStartParams, parse_section
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer
from grpo_pipeline.training.warm_start import (
    FINGERPRINT_FILE,
    HeldOutLeakError,
    check_held_out,
    ensure_warm_start,
    recorded_fingerprint,
)
from tests.conftest import PROJECT_ROOT, greedy_answers
from tests.test_training_and_validation import run_config, weights_changed


def warm_start_config(output_dir: Path, model: Path, **sft: Any) -> RunConfig:
    """A run configuration with a warm start into ``output_dir`` from ``model``."""
    config = run_config(output_dir / "trainer")
    warm_start = WarmStartParams.model_validate(
        {
            "output_dir": str(output_dir),
            "sft": {"max_steps": 30, "per_device_train_batch_size": 16, "learning_rate": 3e-3, "use_cpu": True} | sft,
        }
    )
    model_params = ModelParams(name_or_path=str(model))
    return RunConfig(config.variant, config.params.model_copy(update={"warm_start": warm_start, "model": model_params}))


@pytest.mark.trainer
def test_the_warm_start_teaches_the_answers_and_is_reused_until_something_changes(
    tiny_model_dir: Path, datasets: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train = datasets[0]
    config = warm_start_config(tmp_path / "warm", tiny_model_dir)
    path = ensure_warm_start(train, str(tiny_model_dir), config)
    warm = load_causal_lm(path)
    assert weights_changed(tiny_model_dir, warm)
    tokenizer = load_tokenizer(path)
    answers = greedy_answers(warm, tokenizer, train["prompt_text"].tolist(), max_new_tokens=4)
    # Supervised on answers of the training problems: it answers with their digits, not the random model's noise.
    assert sum(answer.strip().isdigit() for answer in answers) >= len(answers) // 2, answers

    weights = Path(path) / "model.safetensors"
    written = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert ensure_warm_start(train, str(tiny_model_dir), config) == path
    assert "Warm start: reusing" in caplog.text and weights.stat().st_mtime_ns == written
    recorded = recorded_fingerprint(path)
    ensure_warm_start(train.head(20), str(tiny_model_dir), config)  # other data: trained again
    assert (
        weights.stat().st_mtime_ns != written and recorded_fingerprint(path)["data.sha256"] != recorded["data.sha256"]
    )
    assert (Path(path) / FINGERPRINT_FILE).is_file() and not list(tmp_path.glob(".warm.tmp-*"))
    check_held_out(path, datasets[1])  # the held-out prompts were never warm-start examples
    with pytest.raises(HeldOutLeakError, match=r"^3 of the 3 held-out prompts were training examples of the warm"):
        check_held_out(path, train.head(3))


def test_the_sft_section_is_checked_against_sft_config_before_anything_runs() -> None:
    section = {"output_dir": "out", "sft": {"learning_rat": 1e-3, "loss_type": "nl", "output_dir": "x"}}
    with pytest.raises(ParameterError) as error:
        parse_section(WarmStartParams, section, "debug.warm_start")
    message = str(error.value)
    assert "unknown parameter 'debug.warm_start.sft.learning_rat': did you mean 'learning_rate'?" in message
    assert "'debug.warm_start.sft.loss_type' = 'nl': must be one of ['dft', 'nll']" in message
    assert "'debug.warm_start.sft.output_dir': the warm start trains in a scratch directory" in message


def test_the_completion_column_must_be_a_checked_column() -> None:
    raw = load_parameters(PROJECT_ROOT / "conf", "base")["debug"]
    with pytest.raises(ParameterError, match=r"warm_start.completion_column 'solution' is not one of"):
        parse_section(VariantParams, {**raw, "warm_start": {**raw["warm_start"], "completion_column": "solution"}}, "d")

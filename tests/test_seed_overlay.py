from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.run_config import RunConfig, resolve_run_config
from grpo_pipeline.errors import ParameterError
from tests.conftest import PROJECT_ROOT

DEBUG = load_parameters(PROJECT_ROOT / "conf", "base")["debug"]
TRAINING: dict[str, Any] = {
    **DEBUG["training"],
    "per_device_train_batch_size": 32,
    "num_generations": 8,
    "eval_strategy": "no",
    "max_steps": -1,
}


def with_seed_config(seed_config: str | Path) -> RunConfig:
    raw = {**DEBUG, "training": TRAINING, "run": {**DEBUG["run"], "seed_config": str(seed_config)}}
    return resolve_run_config(raw, "debug")


def test_the_seed_debug_config_maps_to_grpo_fields() -> None:
    config = with_seed_config(PROJECT_ROOT / "configs" / "lfm2_350m_debug.yaml")
    training = config.grpo_config
    assert training.steps_per_generation == 2  # num_mini_batches
    assert training.num_iterations == 1  # num_ppo_epochs
    assert training.max_completion_length == 64  # max_new_tokens
    assert training.max_steps == 3  # total_episodes 10 / (32 completions / 8 per prompt = 4 prompts per step)
    assert any(line.startswith("total_episodes: 10 -> max_steps=3") for line in config.seed_config_mapping)
    assert any(line.startswith("num_mini_batches: 2 -> steps_per_generation=2") for line in config.seed_config_mapping)


def test_a_key_without_grpo_meaning_is_an_error(tmp_path: Path) -> None:
    seed_config = tmp_path / "ppo.yaml"
    seed_config.write_text("vf_coef: 0.1\nmax_new_tokens: 16\nnum_rollouts: 3\n")
    with pytest.raises(ParameterError) as error:
        with_seed_config(seed_config)
    assert "'vf_coef' has no GRPO meaning: GRPO has no value network" in str(error.value)
    assert "'num_rollouts' is not a known PPO/GRPO config key" in str(error.value)


def test_a_missing_seed_config_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"'debug\.run\.seed_config': file .*nope\.yaml' not found"):
        with_seed_config(tmp_path / "nope.yaml")


def test_the_overlay_result_is_validated_too(tmp_path: Path) -> None:
    seed_config = tmp_path / "bad.yaml"
    seed_config.write_text("num_mini_batches: 3\n")  # generation batch 32 x 3 = 96 is fine; 3 steps per generation
    assert with_seed_config(seed_config).grpo_config.steps_per_generation == 3
    seed_config.write_text("max_new_tokens: many\n")
    with pytest.raises(ParameterError, match=r"'debug\.training\.max_completion_length' = 'many': Input should be"):
        with_seed_config(seed_config)

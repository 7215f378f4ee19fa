from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from trl import GRPOConfig, SFTConfig

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.params import parse_variant_params
from grpo_pipeline.config.schema import (
    ModelParams,
    ParameterError,
    RewardParams,
    RunParams,
    TrainingParams,
    parse_section,
)
from grpo_pipeline.config.trl_config import TEXT_CHOICES
from grpo_pipeline.training.trainer import build_grpo_config
from grpo_pipeline.variants import VARIANTS
from tests.conftest import PROJECT_ROOT

MODEL = ModelParams(name_or_path="Qwen/Qwen2.5-0.5B-Instruct")
TRAINING: dict[str, Any] = {
    "output_dir": "out",
    "learning_rate": 1e-3,
    "per_device_train_batch_size": 8,
    "num_generations": 4,
    "max_completion_length": 8,
}


@pytest.mark.parametrize("env", ["base", "gpu", "tiny"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_parameters_parse(variant: str, env: str) -> None:
    parse_variant_params(load_parameters(PROJECT_ROOT / "conf", env)[variant], variant)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"learning_rat": 1e-3}, r"unknown parameter 'debug.training.learning_rat': did you mean 'learning_rate'"),
        ({"learning_rate": "fast"}, r"'debug.training.learning_rate' = 'fast': Input should be a valid number"),
        ({"learning_rate": -1.0}, r"'debug.training.learning_rate' = -1.0: Input should be greater than 0"),
        ({"num_generations": 3}, r"num_generations=3 must divide per_device_train_batch_size"),
        ({"max_steps": 0}, r"'debug.training.max_steps' = 0: Value error, 0 steps trains nothing"),
    ],
)
def test_bad_training_parameters_name_key_and_value(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_section(TrainingParams, {**TRAINING, **override}, "debug.training")


def test_save_strategy_no_from_the_command_line() -> None:
    # `kedro run --params=debug.training.save_strategy=no` delivers the YAML boolean False.
    params = parse_section(TrainingParams, {**TRAINING, "save_strategy": False}, "debug.training")
    assert params.save_strategy == "no"


@pytest.mark.parametrize("name", ["data/06_models/nope", "./nope", "/no/such/model"])
def test_a_missing_local_model_is_a_parameter_error(name: str) -> None:
    with pytest.raises(ParameterError, match=rf"name_or_path '{name}' is neither an existing local directory"):
        parse_section(ModelParams, {"name_or_path": name}, "debug.model")


@pytest.mark.parametrize("name", ["LiquidAI/LFM2-350M", "Qwen/Qwen2.5-0.5B-Instruct", "gpt2"])
def test_hub_ids_are_accepted_without_a_network(name: str) -> None:
    assert parse_section(ModelParams, {"name_or_path": name}, "debug.model").name_or_path == name


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ({"functions": []}, r"give at least one reward under functions or models"),
        ({"functions": ["accuracy"], "weights": [1.0, 2.0]}, r"weights has 2 entries but functions has 1"),
        ({"functions": ["accuracy"], "weights": [0.0]}, r"not all zero"),
        ({"models": [{"name_or_path": "data/06_models/nope"}]}, r"reward model 'data/06_models/nope' is neither"),
        ({"models": [{"name_or_path": "a/b/c", "tokenizer": "x"}]}, r"reward model 'a/b/c' is neither"),
        ({"functions": ["accuracy"], "models": [{"name_or_path": "org/accuracy"}]}, r"\['accuracy'\] appears more"),
    ],
)
def test_bad_reward_sections_are_parameter_errors(reward: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_section(RewardParams, reward, "debug.reward")


def test_reward_weights_are_trl_reward_weights_functions_then_models() -> None:
    reward = parse_section(
        RewardParams,
        {
            "functions": ["accuracy", "format"],
            "weights": [1.0, -0.5],
            "models": [{"name_or_path": "Skywork/Skywork-Reward-V2-Qwen3-0.6B", "weight": 3.0}],
        },
        "debug.reward",
    )
    assert reward.labels() == ["accuracy", "format", "Skywork-Reward-V2-Qwen3-0.6B"]
    assert reward.all_weights() == [1.0, -0.5, 3.0]


def test_any_grpo_config_field_reaches_grpo_config_and_the_project_names_none_of_them() -> None:
    training = parse_section(
        TrainingParams,
        {
            **TRAINING,
            "epsilon_high": 0.28,
            "top_entropy_quantile": 0.8,
            "loss_type": "dr_grpo",
            "scale_rewards": False,  # TRL's own spelling of "none"
            "report_to": "mlflow",
        },
        "debug.training",
    )
    config = build_grpo_config(training, RewardParams(functions=["accuracy", "format"]), MODEL, seed=3)
    assert (config.epsilon_high, config.top_entropy_quantile, config.loss_type) == (0.28, 0.8, "dr_grpo")
    assert config.scale_rewards == "none"
    assert config.reward_weights == [1.0, 1.0] and config.seed == 3 and config.report_to == []
    assert config.ddp_find_unused_parameters is False  # the project's default, which the section may change
    assert "epsilon_high" not in TrainingParams.model_fields  # nothing mirrors it by hand
    with_tensorboard = training.model_copy(update={"report_to": ["mlflow", "tensorboard"]})
    assert build_grpo_config(with_tensorboard, RewardParams(functions=["accuracy"]), MODEL, seed=3).report_to == [
        "tensorboard"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"epsilon_hgh": 0.28}, r"unknown parameter 'debug.training.epsilon_hgh': did you mean 'epsilon_high'"),
        ({"top_entropy_quantile": "high"}, r"'debug.training.top_entropy_quantile' = 'high': Input should be a valid"),
        (
            {"lr_scheduler_type": "constnt"},
            r"'debug.training.lr_scheduler_type' = 'constnt': must be one of \['lin",
        ),
        (
            {"eval_strategy": "step"},
            r"'debug.training.eval_strategy' = 'step': must be one of \['no', 'steps'",
        ),
        ({"seed": 3}, r"the project sets GRPOConfig.seed from the variant's `seed`"),
        ({"save_only_model": True}, r"GRPOConfig.save_only_model to False: resuming a crashed run needs the optimizer"),
        ({"report_to": "all"}, r"'debug.training.report_to' = 'all': list the trackers to add"),
        ({"loss_type": "dapoo"}, r"'debug.training.loss_type' = 'dapoo': must be one of \['grpo', 'dr_grpo', 'dapo'"),
        ({"scale_rewards": "grup"}, r"'debug.training.scale_rewards' = 'grup': must be one of \['group', 'batch'"),
        ({"importance_sampling_level": "seq"}, r"importance_sampling_level' = 'seq': must be one of \['token', 'seq"),
        (
            {"resume_from_checkpoint": False},
            r"'debug.training.resume_from_checkpoint': it is the project's, not GRPOConfig's: set "
            r"debug.run.resume_from_checkpoint",
        ),
        (
            {"torch_num_thread": 2},
            r"'debug.training.torch_num_thread': did you mean 'torch_num_threads'\? \(it is the project's, not "
            r"GRPOConfig's: set debug.run.torch_num_threads\)",
        ),
        ({"model_init_kwargs": {"dtype": "bfloat16"}}, r"model_init_kwargs' sets \['dtype'\]: the model section"),
    ],
)
def test_grpo_config_fields_are_checked_by_trls_own_names_and_types(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        training = parse_section(TrainingParams, {**TRAINING, **override}, "debug.training")
        build_grpo_config(training, RewardParams(functions=["accuracy"]), MODEL, seed=0, prefix="debug.training")


def test_the_text_choices_are_the_values_trl_documents() -> None:
    fields = {field.name: field for field in dataclasses.fields(GRPOConfig)}
    for name, values in TEXT_CHOICES["GRPOConfig"].items():
        help_text = fields[name].metadata["help"]
        assert [value for value in values if isinstance(value, str) and value not in help_text] == [], name
    sft_help = next(field for field in dataclasses.fields(SFTConfig) if field.name == "loss_type").metadata["help"]
    assert all(value in sft_help for value in TEXT_CHOICES["SFTConfig"]["loss_type"])


def test_run_keys_live_in_their_own_section() -> None:
    raw = load_parameters(PROJECT_ROOT / "conf", "base")["debug"]
    params = parse_variant_params({**raw, "run": {**raw["run"], "resume_from_checkpoint": False}}, "debug")
    assert params.run.resume_from_checkpoint is False and params.run.torch_num_threads == 2
    assert not set(RunParams.model_fields) & set(params.training.model_dump())
    with pytest.raises(
        ParameterError, match=r"'debug.run.max_steps': it is a trl.GRPOConfig field: set debug.training.max_steps"
    ):
        parse_variant_params({**raw, "run": {"max_steps": 3}}, "debug")

"""The parameters: trl.GRPOConfig (and SFTConfig) are the schema of their sections, checked by TRL's own fields and
``__post_init__``; the project's own sections by its schema; everything resolved once into a RunConfig."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from peft import LoraConfig
from trl import GRPOConfig

from grpo_pipeline.config import run_config as run_config_module
from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.run_config import RunConfig, resolve_run_config
from grpo_pipeline.config.schema import (
    ModelParams,
    RewardParams,
    RunParams,
    TrainingParams,
    VariantParams,
    parse_section,
)
from grpo_pipeline.config.trl_config import documented_choices
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.variants import find_variants, variant_names
from tests.conftest import PROJECT_ROOT

DEBUG = load_parameters(PROJECT_ROOT / "conf", "base")["debug"]


def resolve(training: dict[str, Any] | None = None, **sections: Any) -> RunConfig:
    """The debug variant's run configuration with ``training`` keys and whole ``sections`` changed."""
    merged = {**DEBUG, **sections, "training": {**DEBUG["training"], **(training or {})}}
    return resolve_run_config(merged, "debug")


@pytest.mark.parametrize(
    ("variant", "env"),
    [
        (variant, env)
        for env in ("base", "tiny")
        for variant in sorted(find_variants(PROJECT_ROOT / "conf", ["base", env]))
    ],
)
def test_shipped_parameters_resolve(variant: str, env: str) -> None:
    config = resolve_run_config(load_parameters(PROJECT_ROOT / "conf", env)[variant], variant)
    assert config.grpo_config.output_dir == f"data/06_models/{variant}/trainer_output"


@pytest.mark.parametrize("variant", variant_names(PROJECT_ROOT / "conf"))
def test_shipped_gpu_parameters_parse(variant: str) -> None:
    # TRL itself refuses bf16 where there is no GPU, so on this machine the gpu site's sections are parsed only.
    parse_section(VariantParams, load_parameters(PROJECT_ROOT / "conf", "gpu")[variant], variant)


def test_no_grpo_config_field_is_declared_by_the_project() -> None:
    assert TrainingParams.model_fields == {}
    declared = "\n".join(path.read_text() for path in (PROJECT_ROOT / "src/grpo_pipeline/config").glob("*.py"))
    for name in ("learning_rate", "num_train_epochs", "save_strategy", "lr_scheduler_type", "num_generations"):
        assert name in {field.name for field in dataclasses.fields(GRPOConfig)}
        assert not re.search(rf"^\s+{name}\s*:", declared, re.MULTILINE), name


def test_what_is_not_set_takes_trls_default() -> None:
    training = {key: value for key, value in DEBUG["training"].items() if key not in ("lr_scheduler_type",)}
    config = resolve_run_config({**DEBUG, "training": training}, "debug").grpo_config
    assert config.lr_scheduler_type == GRPOConfig(output_dir="x", use_cpu=True).lr_scheduler_type == "linear"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"learning_rat": 1e-3}, r"unknown parameter 'debug.training.learning_rat': did you mean 'learning_rate'"),
        ({"learning_rate": "fast"}, r"'debug.training.learning_rate' = 'fast': Input should be a valid number"),
        ({"num_generations": 3}, r"rejected 'debug.training': generation_batch_size \(32\) must be divisible by num_g"),
        ({"num_generations": 1, "per_device_train_batch_size": 1}, r"GRPO requires at least 2 generations per prompt"),
        ({"auto_find_batch_size": True}, r"auto_find_batch_size is not supported by GRPO"),
        ({"steps_per_generation": 2, "generation_batch_size": 64}, r"can not be both configured"),
    ],
)
def test_what_trl_refuses_is_refused_with_one_short_message(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message) as error:
        resolve(override)
    assert str(error.value).startswith("Invalid parameters:\n  - ")
    assert "Traceback" not in str(error.value) and len(str(error.value).splitlines()) <= 4


def test_the_peft_section_is_peft_lora_config_whole() -> None:
    peft = {"r": 4, "use_rslora": True, "modules_to_save": ["lm_head"], "target_modules": r".*\.(q|v)_proj"}
    lora = resolve(peft={**peft, "merge_and_export": True}).build_lora_config()
    assert isinstance(lora, LoraConfig) and lora.task_type == "CAUSAL_LM" and lora.use_rslora
    assert (lora.r, lora.modules_to_save, lora.target_modules) == (4, ["lm_head"], peft["target_modules"])
    assert lora.lora_alpha == LoraConfig().lora_alpha  # what is not set takes peft's default
    assert resolve(peft=None).build_lora_config() is None


@pytest.mark.parametrize(
    ("peft", "message"),
    [
        ({"use_rslor": True}, r"unknown parameter 'debug.peft.use_rslor': did you mean 'use_rslora'"),
        ({"r": "big"}, r"'debug.peft.r' = 'big': Input should be a valid integer"),
        ({"bias": "some"}, r"'debug.peft.bias' = 'some': Input should be 'none', 'all' or 'lora_only'"),
        ({"task_type": "SEQ_CLS"}, r"'debug.peft.task_type': GRPO trains a causal language model"),
        ({"layers_pattern": "layers"}, r"peft.LoraConfig rejected 'debug.peft': .*layers_pattern"),
    ],
)
def test_what_peft_refuses_is_refused_before_work(peft: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message) as error:
        resolve(peft=peft)
    assert "Traceback" not in str(error.value) and len(str(error.value).splitlines()) <= 3


@pytest.mark.parametrize(
    ("training", "num_processes"),
    [
        ({"per_device_train_batch_size": 4, "num_generations": 16}, 4),  # the generation batch spans processes
        ({"per_device_train_batch_size": 2, "num_generations": 8, "steps_per_generation": 4}, 1),
        ({"per_device_train_batch_size": 8, "num_generations": 16, "generation_batch_size": 16}, 1),
    ],
)
def test_batches_trl_accepts_are_accepted(training: dict[str, Any], num_processes: int) -> None:
    config = resolve(
        {"gradient_accumulation_steps": 1, "per_device_eval_batch_size": 16, **training},
        distributed={"num_processes": num_processes},
    )
    assert config.grpo_config.generation_batch_size % training["num_generations"] == 0


def test_the_same_batch_on_one_process_is_refused_as_trl_refuses_it() -> None:
    with pytest.raises(ParameterError, match=r"generation_batch_size \(4\) must be divisible by num_generations \(16"):
        resolve({"per_device_train_batch_size": 4, "num_generations": 16, "gradient_accumulation_steps": 1})


def test_save_strategy_best_is_accepted() -> None:
    config = resolve({"save_strategy": "best", "metric_for_best_model": "eval_reward", "load_best_model_at_end": True})
    assert config.grpo_config.save_strategy == "best"


def test_save_strategy_no_from_the_command_line() -> None:
    # `kedro run --params=debug.training.save_strategy=no` delivers the YAML boolean False.
    assert resolve({"save_strategy": False}).grpo_config.save_strategy == "no"


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
        ({"functions": ["accuracy"], "weights": [1.0, 2.0]}, r"weights has 2 entries but functions has 1"),
        ({"functions": ["accuracy"], "weights": [0.0]}, r"not all zero"),
        ({"models": [{"name_or_path": "data/06_models/nope"}]}, r"reward model 'data/06_models/nope' is neither"),
        ({"models": [{"name_or_path": "a/b/c", "tokenizer": "x"}]}, r"reward model 'a/b/c' is neither"),
    ],
)
def test_bad_reward_sections_are_parameter_errors(reward: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_section(RewardParams, reward, "debug.reward")


def test_two_rewards_with_one_name_are_refused_before_trl_logs_them_as_one() -> None:
    reward = {"functions": ["accuracy"], "models": [{"name_or_path": "org/accuracy"}]}
    with pytest.raises(ParameterError, match=r"more than one reward is named \['accuracy'\].*`name:`"):
        resolve(reward=reward)


def test_reward_weights_are_trl_reward_weights_functions_then_models() -> None:
    config = resolve(
        reward={
            "functions": ["accuracy", "format"],
            "weights": [1.0, -0.5],
            "models": [{"name_or_path": "Skywork/Skywork-Reward-V2-Qwen3-0.6B", "weight": 3.0}],
        }
    )
    assert config.rewards.names == ["accuracy", "format", "Skywork-Reward-V2-Qwen3-0.6B"]
    assert config.rewards.weights == config.grpo_config.reward_weights == [1.0, -0.5, 3.0]


def test_any_grpo_config_field_reaches_grpo_config() -> None:
    config = resolve(
        {
            "epsilon_high": 0.28,
            "top_entropy_quantile": 0.8,
            "loss_type": "dr_grpo",
            "scale_rewards": False,  # TRL's own spelling of "none"
            "report_to": "mlflow",
        }
    ).grpo_config
    assert (config.epsilon_high, config.top_entropy_quantile, config.loss_type) == (0.28, 0.8, "dr_grpo")
    assert config.scale_rewards == "none"
    assert config.reward_weights == [1.0] and config.seed == DEBUG["seed"] and config.report_to == []
    assert config.ddp_find_unused_parameters is False  # the project's default, which the section may change
    assert resolve({"report_to": ["mlflow", "tensorboard"]}).grpo_config.report_to == ["tensorboard"]


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
        ({"loss_type": "dapoo"}, r"'debug.training.loss_type' = 'dapoo': must be one of \['bnpo', 'cispo', 'dapo'"),
        ({"importance_sampling_level": "seq"}, r"importance_sampling_level' = 'seq': must be one of \['sequence', 'to"),
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
        resolve(override)


def test_text_choices_are_read_from_trls_own_help() -> None:
    assert {"grpo", "dr_grpo", "dapo", "bnpo", "cispo"} <= documented_choices("GRPOConfig", "loss_type")
    assert documented_choices("SFTConfig", "loss_type") == {"nll", "dft"}
    assert documented_choices("GRPOConfig", "output_dir") is None  # free text stays free


def test_run_keys_live_in_their_own_section() -> None:
    config = resolve(run={**DEBUG["run"], "resume_from_checkpoint": False})
    assert config.params.run.resume_from_checkpoint is False and config.params.run.torch_num_threads == 2
    assert not set(RunParams.model_fields) & set(config.params.training.model_dump())
    with pytest.raises(
        ParameterError, match=r"'debug.run.max_steps': it is a trl.GRPOConfig field: set debug.training.max_steps"
    ):
        resolve(run={"max_steps": 3})


def test_the_run_config_travels_to_another_process_as_json() -> None:
    config = resolve({"epsilon_high": 0.28}, reward={"functions": ["accuracy", {"function": "format", "name": "fmt"}]})
    copy = RunConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert copy == config and copy.rewards.names == ["accuracy", "fmt"]
    assert copy.build_grpo_config().to_dict() == config.build_grpo_config().to_dict()


def test_each_section_is_parsed_once_per_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []
    parse = run_config_module.parse_section
    monkeypatch.setattr(run_config_module, "parse_section", lambda *args: calls.append(args[2]) or parse(*args))
    run_config_module.forget_resolved()
    first = run_config_module.resolved_once(DEBUG, "debug")
    assert run_config_module.resolved_once(dict(DEBUG), "debug") is first
    assert calls == ["debug"]  # the whole variant, every section in one parse
    run_config_module.forget_resolved()

"""A TRL CLI or open-r1 GRPO recipe turned into an experiment folder: ``conf/<env>/<name>/`` with its
``parameters.yml`` (the variant) and ``catalog.yml`` (its data source).

A recipe is one flat YAML mapping whose keys are fields of TRL's ``ModelConfig``, ``ScriptArguments`` (and the
GRPO script's ``reward_funcs``, ``reward_model_name_or_path``), ``GRPOConfig``, or open-r1's additions to them
(``system_prompt``, ``dataset_prompt_column``, its reward names, ...). Each key is read from those classes as the
installed TRL defines them: a ``GRPOConfig`` field goes to ``training`` as it is, the model, data and reward keys to
the project's sections; a key that cannot be carried over is named with the reason. With ``tiny`` a second file,
``conf/tiny/<name>/parameters.yml``, substitutes the project's tiny model and CPU settings, so that
``kedro run --env=tiny --pipelines=grpo_<name>`` runs the recipe offline in seconds (the wiring, not the learning).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grpo_pipeline.config.trl_config import SET_BY_PROJECT
from grpo_pipeline.errors import ProjectError

# open-r1's reward names (open_r1/rewards.py): where this project or TRL has the same reward, that one; open-r1's
# plain functions by import path (with open-r1 installed); its factories need their recipe keys, named below.
OPEN_R1_REWARDS = {
    "accuracy": "accuracy_reward",  # TRL's accuracy_reward is open-r1's: math_verify against `solution`
    "format": "open_r1.rewards:format_reward",
    "reasoning_steps": "open_r1.rewards:reasoning_steps_reward",
    "length": "open_r1.rewards:len_reward",
    "tag_count": "open_r1.rewards:tag_count_reward",
}
OPEN_R1_FACTORY_REWARDS = {
    "cosine": "get_cosine_scaled_reward",
    "repetition_penalty": "get_repetition_penalty_reward",
    "code": "code_reward",
    "binary_code": "binary_code_reward",
    "ioi_code": "ioi_code_reward",
    "cf_code": "cf_code_reward",
    "code_format": "get_code_format_reward",
}
# TRL's GRPO script builds this one with fixed arguments (trl/scripts/grpo.py).
TRL_SCRIPT_SOFT_OVERLONG = {"max_completion_len": 1280, "soft_punish_cache": 256}
# TRL's rewards that read the gold answer from the `solution` column.
SOLUTION_REWARDS = {"accuracy_reward", "reasoning_accuracy_reward"}
# open-r1's own keys beside TRL's, and why each is not carried over (those carried over are mapped below).
OPEN_R1_NOT_CARRIED = {
    "benchmarks": "open-r1 runs lighteval benchmarks after training; this project validates the checkpoint on held-out "
    "prompts (validation section)",
    "callbacks": "open-r1's hub-push callbacks; this project registers the validated model in MLflow instead",
    "chat_template": "the project applies the tokenizer's own chat template; save the template with the tokenizer",
    "hub_model_revision": "open-r1 pushes hub revisions; this project registers the validated model in MLflow",
    "overwrite_hub_revision": "open-r1 pushes hub revisions; this project registers the validated model in MLflow",
    "push_to_hub_revision": "open-r1 pushes hub revisions; this project registers the validated model in MLflow",
    "wandb_entity": "set WANDB_ENTITY in the environment (training.report_to: [wandb] reaches TRL as it is)",
    "wandb_project": "set WANDB_PROJECT in the environment (training.report_to: [wandb] reaches TRL as it is)",
    "wandb_run_group": "set WANDB_RUN_GROUP in the environment",
    "wandb_log_unique_prompts": "open-r1's W&B table option; TRL's log_completions covers it",
    "dataset_mixture": "a mixture of several datasets: write one catalog entry that reads them (or mix them first)",
    "code_language": "read by open-r1's code rewards only",
    "code_eval_test_batch_size": "read by open-r1's code rewards only",
    "code_eval_scoring_mode": "read by open-r1's code rewards only",
    "parallel_code_exec_per_proc": "read by open-r1's code rewards only",
    "code_provider": "read by open-r1's code rewards only",
    "ioi_provider": "read by open-r1's code rewards only",
    "e2b_router_url": "read by open-r1's code rewards only",
    "morph_router_url": "read by open-r1's code rewards only",
    "enforce_same_language": "read by open-r1's code rewards only",
}
OPEN_R1_REWARD_ARGUMENTS = (
    "cosine_min_value_wrong",
    "cosine_max_value_wrong",
    "cosine_min_value_correct",
    "cosine_max_value_correct",
    "cosine_max_len",
    "repetition_n_grams",
    "repetition_max_penalty",
    "max_completion_len",
    "soft_punish_cache",
)
OPEN_R1_KEYS = {"system_prompt", "dataset_prompt_column", "dataset_configs", "num_processes"} | set(OPEN_R1_NOT_CARRIED)
# Project defaults an imported recipe keeps where it is silent: its own output folder, and a vLLM server bound to
# 127.0.0.1 (TRL's default listens on every interface).
KEPT_PROJECT_DEFAULTS = ("output_dir", "vllm_server_host")
# The project writes every run of a variant under data/06_models/<name>/: its checkpoints are its lineage.
OUTPUT_DIR_REASON = "the experiment writes under data/06_models/<name>/trainer_output (training.output_dir's default)"
# What the tiny model needs to run any recipe offline on a CPU in seconds: the wiring, not the learning.
TINY_OVERLAY: dict[str, Any] = {
    "model": {"build_tiny": {"max_position_embeddings": 1024}, "revision": None, "dtype": "float32"},
    "data": {"eval_size": 8, "max_train_prompts": 64},
    "formatting": {"max_prompt_length": 512},
    "training": {
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "use_vllm": False,
        "max_steps": 4,
        "logging_steps": 1,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 4,
        "max_completion_length": 32,
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 4,
        "activation_checkpointing": False,
        "gradient_checkpointing": False,
        "model_init_kwargs": None,
        "push_to_hub": False,
        "report_to": "none",
    },
    "distributed": {"num_processes": 1, "accelerate_config": None},
    "run": {"torch_num_threads": 2},
    # A random tiny model after 4 steps answers every prompt alike, or not at all: the collapse checks are about
    # learning, which this overlay does not try.
    "validation": {
        "max_prompts": 8,
        "max_new_tokens": 32,
        "sampled_completions": 2,
        "max_same_answer_share": None,
        "max_no_answer_share": None,
    },
}


class RecipeError(ProjectError, ValueError):
    """A recipe file that cannot be read as a GRPO recipe; the message names the file and what to fix."""


@dataclass
class ImportedRecipe:
    """A recipe as the project's configuration: the variant's section, its catalog entry, and every key of the recipe
    that was not carried over, with the reason."""

    name: str
    style: str
    parameters: dict[str, Any]
    catalog: dict[str, Any]
    not_carried: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@functools.cache
def _fields(class_path: str) -> frozenset[str]:
    module, _, name = class_path.rpartition(".")
    import importlib  # noqa: PLC0415

    return frozenset(item.name for item in dataclasses.fields(getattr(importlib.import_module(module), name)))


def grpo_config_fields() -> frozenset[str]:
    return _fields("trl.GRPOConfig")


def model_config_fields() -> frozenset[str]:
    return _fields("trl.ModelConfig")


def script_fields() -> frozenset[str]:
    return _fields("trl.scripts.grpo.GRPOScriptArguments") | _fields("trl.DatasetMixtureConfig")


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe file's mapping; a :class:`RecipeError` naming the file when it is not one."""
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read it as YAML ({error})") from None
    if not isinstance(recipe, dict) or "model_name_or_path" not in recipe:
        raise RecipeError(
            f"{path}: a GRPO recipe is one YAML mapping with at least model_name_or_path (and dataset_name), as "
            "`trl grpo --config` and open-r1's recipes/ read it"
        )
    return recipe


def import_recipe(recipe: dict[str, Any], name: str, project_training: dict[str, Any] | None = None) -> ImportedRecipe:
    """``recipe`` (a TRL CLI or open-r1 GRPO recipe) as the variant ``name``: see the module doc. ``project_training``
    is the training section every variant starts from (``variant_defaults``): where it sets a GRPOConfig field the
    recipe leaves to TRL, the experiment states TRL's default, so that it trains as TRL would."""
    style = "open-r1" if OPEN_R1_KEYS & set(recipe) else "TRL"
    imported = ImportedRecipe(name, style, {}, {})
    section: dict[str, Any] = {"benchmark": {"mode": name}}
    training: dict[str, Any] = {}
    model_init: dict[str, Any] = {}
    keys = dict(recipe)
    _model(keys, section, model_init, imported)
    _data(keys, section, imported, style)
    _rewards(keys, section, imported, style)
    for key, value in keys.items():
        if key in SET_BY_PROJECT["GRPOConfig"]:
            if key in ("seed", "data_seed"):
                section.setdefault("seed", value)
            else:
                imported.not_carried[key] = SET_BY_PROJECT["GRPOConfig"][key]
        elif key == "output_dir":
            imported.not_carried[key] = OUTPUT_DIR_REASON
        elif key == "max_prompt_length":
            section["formatting"] = {"max_prompt_length": value}
        elif key == "num_processes":
            section["distributed"] = {"num_processes": value}
        elif key in grpo_config_fields():
            training[key] = value
        elif key in OPEN_R1_NOT_CARRIED:
            imported.not_carried[key] = OPEN_R1_NOT_CARRIED[key]
        elif key in OPEN_R1_REWARD_ARGUMENTS:
            imported.not_carried[key] = "an argument of an open-r1 reward this recipe does not use"
        elif key in model_config_fields() or key in script_fields():
            imported.not_carried[key] = "the project has no counterpart for this TRL script option"
        else:
            imported.not_carried[key] = (
                "not a field of TRL's GRPOConfig, ModelConfig or ScriptArguments in the installed TRL, nor an open-r1 "
                "recipe key (removed or renamed in TRL?)"
            )
    if model_init:
        training["model_init_kwargs"] = {**model_init, **(training.get("model_init_kwargs") or {})}
    restored = _trl_defaults_under(project_training or {}, training)
    if restored:
        imported.notes.append(
            f"{', '.join(sorted(restored))}: not in the recipe, written with TRL's defaults (variant_defaults differ)"
        )
    section["training"] = training | restored
    completion_length = training.get("max_completion_length")
    section["validation"] = {
        "accuracy_reward": next((reward for reward in _function_names(section) if reward in SOLUTION_REWARDS), None),
        **({"max_new_tokens": completion_length} if completion_length else {}),
    }
    imported.parameters = {name: section}
    return imported


def _trl_defaults_under(project_training: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """TRL's default of each GRPOConfig field ``project_training`` sets to another value and the recipe does not set."""
    from grpo_pipeline.config.trl_config import trl_default  # noqa: PLC0415 (imports TRL)

    restored = {}
    for key, value in project_training.items():
        if (
            key in training
            or key in KEPT_PROJECT_DEFAULTS
            or key in SET_BY_PROJECT["GRPOConfig"]
            or key not in grpo_config_fields()
        ):
            continue
        default = trl_default("GRPOConfig", key)
        if default is not dataclasses.MISSING and default != value:
            restored[key] = default
    return restored


def _function_names(section: dict[str, Any]) -> list[str]:
    return [entry if isinstance(entry, str) else entry["function"] for entry in section["reward"]["functions"]]


def _model(keys: dict[str, Any], section: dict[str, Any], model_init: dict[str, Any], imported: ImportedRecipe) -> None:
    model: dict[str, Any] = {"name_or_path": keys.pop("model_name_or_path")}
    if "model_revision" in keys:
        model["revision"] = keys.pop("model_revision")
    for dtype_key in ("dtype", "torch_dtype"):
        if dtype_key in keys:
            model["dtype"] = keys.pop(dtype_key)
    if "trust_remote_code" in keys:
        model["trust_remote_code"] = keys.pop("trust_remote_code")
    if "attn_implementation" in keys:
        model_init["attn_implementation"] = keys.pop("attn_implementation")
    section["model"] = model
    quantization = {
        target: keys.pop(source)
        for source, target in (
            ("load_in_4bit", "load_in_4bit"),
            ("load_in_8bit", "load_in_8bit"),
            ("bnb_4bit_quant_type", "bnb_4bit_quant_type"),
            ("use_bnb_nested_quant", "bnb_4bit_use_double_quant"),
            ("bnb_4bit_quant_storage", "bnb_4bit_quant_storage"),
        )
        if source in keys
    }
    if quantization.get("load_in_4bit") or quantization.get("load_in_8bit"):
        model_init["quantization_config"] = quantization
    lora_keys = [key for key in model_config_fields() if key.startswith("lora_") or key in LORA_SWITCHES]
    peft_keys = {key: keys.pop(key) for key in sorted(lora_keys) if key in keys}
    if peft_keys.pop("use_peft", False):
        section["peft"] = _lora_section(peft_keys)
    elif peft_keys:
        imported.notes.append(f"LoRA settings {sorted(peft_keys)} without use_peft: full fine-tuning, as TRL does")


# TRL's ModelConfig names its LoRA settings lora_*, and these.
LORA_SWITCHES = ("use_peft", "use_rslora", "use_dora")


def _lora_section(model_config_keys: dict[str, Any]) -> dict[str, Any]:
    """The ``peft`` section (peft.LoraConfig's fields) of the adapters TRL's script builds from these ModelConfig
    settings (``trl.get_peft_config``): what differs from peft's defaults, TRL's defaults (r 16, ...) included."""
    from peft import LoraConfig  # noqa: PLC0415 (imports torch)
    from trl import ModelConfig, get_peft_config  # noqa: PLC0415

    lora, defaults = get_peft_config(ModelConfig(use_peft=True, **model_config_keys)), LoraConfig()
    section = {}
    for lora_field in dataclasses.fields(LoraConfig):
        name, value = lora_field.name, getattr(lora, lora_field.name)
        if lora_field.init and name != "task_type" and value != getattr(defaults, name):
            section[name] = sorted(value) if isinstance(value, set) else value  # peft keeps module names as a set
    return section


def _data(keys: dict[str, Any], section: dict[str, Any], imported: ImportedRecipe, style: str) -> None:
    dataset_name = keys.pop("dataset_name", None)
    if dataset_name is None:
        raise RecipeError("the recipe names no dataset_name; the experiment needs its data source")
    dataset_kwargs: dict[str, Any] = {}
    config = keys.pop("dataset_config", None)
    configs = keys.pop("dataset_configs", None)  # open-r1's older recipes: a list of configs
    if config is None and configs:
        config = configs[0]
        if len(configs) > 1:
            imported.not_carried["dataset_configs"] = f"only the first config ({config!r}) is read; mix them first"
    if config is not None:
        dataset_kwargs["name"] = config
    entry: dict[str, Any] = {"type": "grpo_pipeline.io.HFHubDataset", "dataset_name": dataset_name}
    if dataset_kwargs:
        entry["dataset_kwargs"] = dataset_kwargs
    entry["metadata"] = {"kedro-viz": {"layer": "raw"}}
    imported.catalog = {f"{imported.name}.raw_prompts": entry}
    data: dict[str, Any] = {"train_split": keys.pop("dataset_train_split", "train")}
    if "dataset_test_split" in keys:
        data["eval_split"] = keys.pop("dataset_test_split")
    # TRL's script trains on the dataset's `prompt` column; open-r1 builds the prompt from `problem` by default.
    data["prompt_column"] = keys.pop("dataset_prompt_column", "problem" if style == "open-r1" else "prompt")
    if "system_prompt" in keys:
        data["system_prompt"] = keys.pop("system_prompt")
    streaming = [keys.pop(key, False) for key in ("dataset_streaming", "streaming")]  # TRL's script, its mixtures
    if any(streaming):
        imported.not_carried["dataset_streaming"] = "the pipeline checks every row before training: it reads them all"
    section["data"] = data


def _rewards(keys: dict[str, Any], section: dict[str, Any], imported: ImportedRecipe, style: str) -> None:
    rewards = keys.pop("reward_funcs", None) or []
    weights = keys.pop("reward_weights", None)
    models = []
    if reward_model := keys.pop("reward_model_name_or_path", None):
        # TRL's script puts the reward model first: its weight is the first of reward_weights.
        model_weight, weights = (weights[0], weights[1:]) if weights else (1.0, None)
        models.append({"name_or_path": reward_model, "weight": model_weight})
    if weights is not None and len(weights) != len(rewards):
        imported.not_carried["reward_weights"] = (
            f"{len(weights)} weights for {len(rewards)} rewards; set reward.weights"
        )
        weights = None
    functions, kept_weights = [], []
    for index, reward in enumerate(rewards):
        entry = _reward_entry(reward, keys, imported, style)
        if entry is not None:
            functions.append(entry)
            kept_weights.append(weights[index] if weights is not None else 1.0)
    section["reward"] = {"functions": functions, "weights": kept_weights if weights is not None else None}
    if models:
        section["reward"]["models"] = models
    section["data"]["required_columns"] = ["solution"] if set(_function_names(section)) & SOLUTION_REWARDS else []


def _reward_entry(reward: str, keys: dict[str, Any], imported: ImportedRecipe, style: str) -> Any:
    """The project's entry for one of the recipe's reward_funcs, or None (noted) where it has none."""
    if style == "open-r1" and reward in OPEN_R1_REWARDS:
        return OPEN_R1_REWARDS[reward]
    if style == "open-r1" and reward == "soft_overlong_punishment":
        arguments = {argument: keys.pop(argument) for argument in ("max_completion_len", "soft_punish_cache")}
        return {"function": "get_soft_overlong_punishment", "kwargs": arguments}
    if style == "open-r1" and reward in OPEN_R1_FACTORY_REWARDS:
        imported.not_carried[f"reward_funcs: {reward}"] = (
            f"open-r1 builds it from its recipe keys; list it as {{function: "
            f"'open_r1.rewards:{OPEN_R1_FACTORY_REWARDS[reward]}', kwargs: {{...}}}} with open-r1 installed "
            "(its weight is left out)"
        )
        return None
    if reward == "get_soft_overlong_punishment":
        return {"function": reward, "kwargs": dict(TRL_SCRIPT_SOFT_OVERLONG)}
    return reward  # TRL's rewards by name and import paths, read here as TRL's script reads them


def write_experiment(
    imported: ImportedRecipe, conf: Path, env: str, recipe: Path, tiny: bool, force: bool
) -> list[Path]:
    """Write ``conf/<env>/<name>/`` (and with ``tiny`` ``conf/tiny/<name>/``); the files written."""
    folder = conf / env / imported.name
    targets = [folder / "parameters.yml", folder / "catalog.yml"]
    if tiny:
        targets.append(conf / "tiny" / imported.name / "parameters.yml")
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise RecipeError(f"{', '.join(existing)} already exist; pass --force to replace them")
    header = (
        f"# Imported from {recipe} ({imported.style} recipe) by `kedro import-recipe`. Only what differs from\n"
        "# conf/base/parameters.yml's variant_defaults is written; the training section is trl.GRPOConfig.\n"
    )
    not_carried = "".join(f"#   {key}: {reason}\n" for key, reason in imported.not_carried.items())
    header += f"# Not carried over:\n{not_carried}" if not_carried else ""
    header += "".join(f"# Note: {note}\n" for note in imported.notes)
    contents = [header + _yaml(imported.parameters), _yaml(imported.catalog)]
    if tiny:
        overlay = {imported.name: _tiny_overlay(imported)}
        contents.append(
            f"# `kedro run --env=tiny --pipelines=grpo_{imported.name}`: the recipe offline on a CPU, on the tiny\n"
            "# model the project builds, in seconds: it checks the wiring (data, rewards, trainer, validation), not\n"
            "# learning.\n" + _yaml(overlay)
        )
    for path, content in zip(targets, contents, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return targets


def check_experiment(conf: Path, env: str | None, name: str) -> str | None:
    """What ``kedro run --env=<env> --pipelines=grpo_<name>`` would refuse in the experiment's parameters here (its
    rewards importable, TRL's own checks of the training section on this machine), or None."""
    from grpo_pipeline.config.loader import load_parameters  # noqa: PLC0415 (the project's configuration)
    from grpo_pipeline.config.run_config import resolve_run_config  # noqa: PLC0415

    try:
        resolve_run_config(load_parameters(conf, env)[name], name)
    except ProjectError as error:
        return str(error)
    return None


def _tiny_overlay(imported: ImportedRecipe) -> dict[str, Any]:
    overlay = {key: (dict(value) if isinstance(value, dict) else value) for key, value in TINY_OVERLAY.items()}
    overlay["model"] = {"name_or_path": f"data/06_models/{imported.name}/base_model", **TINY_OVERLAY["model"]}
    return overlay


class _Dumper(yaml.SafeDumper):
    """YAML as a person writes it: a text of several lines (a system prompt) as a literal block."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _yaml(content: dict[str, Any]) -> str:
    return yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)

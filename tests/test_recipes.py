"""TRL CLI and open-r1 GRPO recipes imported as experiment folders, and run offline on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.recipes import grpo_config_fields, import_recipe, read_recipe
from tests.conftest import PROJECT_ROOT, invoke_kedro, mlflow_runs, run_kedro

RECIPES = Path(__file__).parent / "recipes"


def test_an_open_r1_recipe_maps_every_key_or_names_why_not() -> None:
    recipe = read_recipe(RECIPES / "open_r1_config_demo.yaml")
    imported = import_recipe(recipe, "math")
    section = imported.parameters["math"]
    assert imported.style == "open-r1"
    assert section["model"] == {"name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "revision": "main", "dtype": "bfloat16"}
    assert section["training"]["model_init_kwargs"] == {"attn_implementation": "flash_attention_2"}
    assert section["data"]["prompt_column"] == "problem" and section["data"]["system_prompt"] == recipe["system_prompt"]
    assert section["data"]["required_columns"] == ["solution"] and section["seed"] == 42
    # open-r1's accuracy is TRL's accuracy_reward; its plain rewards by import path; the factory named, with its weight.
    assert section["reward"] == {
        "functions": ["accuracy_reward", "open_r1.rewards:format_reward", "open_r1.rewards:tag_count_reward"],
        "weights": [1.0, 1.0, 1.0],
    }
    assert section["validation"] == {"accuracy_reward": "accuracy_reward", "max_new_tokens": 1024}
    assert section["formatting"] == {"max_prompt_length": 512}
    assert imported.catalog == {
        "math.raw_prompts": {
            "type": "grpo_pipeline.io.HFHubDataset",
            "dataset_name": "open-r1/OpenR1-Math-220k",
            "metadata": {"kedro-viz": {"layer": "raw"}},
        }
    }
    # Every GRPOConfig field of the recipe reaches training as written, but those the project sets itself.
    carried = {key for key in recipe if key in grpo_config_fields()} - {"seed", "output_dir", "reward_weights"}
    assert carried == set(section["training"]) - {"model_init_kwargs"}
    assert all(section["training"][key] == recipe[key] for key in carried)
    assert set(imported.not_carried) == {
        "reward_funcs: cosine",
        "vllm_device",
        "overwrite_output_dir",
        "warmup_ratio",
        "output_dir",
        "wandb_entity",
        "wandb_project",
    }
    assert "not a field of TRL's GRPOConfig" in imported.not_carried["vllm_device"]


def test_a_trl_cli_recipe_maps_lora_splits_and_the_scripts_reward_arguments() -> None:
    project_training = load_parameters(PROJECT_ROOT / "conf")["variant_defaults"]["training"]
    imported = import_recipe(read_recipe(RECIPES / "trl_grpo_cli.yaml"), "deepmath", project_training)
    section = imported.parameters["deepmath"]
    # Where the recipe is silent it trains as TRL would: TRL's defaults over the project's, but its safe server host.
    assert project_training["logging_steps"] == 1 and section["training"]["logging_steps"] == 10
    assert section["training"]["save_steps"] == 500 and "vllm_server_host" not in section["training"]
    assert imported.style == "TRL" and imported.not_carried.keys() == {"output_dir"}
    # The adapters trl.get_peft_config builds: TRL's defaults (lora_dropout 0.05) where the recipe is silent.
    lora = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["k_proj", "o_proj", "q_proj", "v_proj"]}
    assert section["peft"] == lora
    assert section["data"] == {
        "train_split": "train",
        "eval_split": "test",
        "prompt_column": "prompt",
        "required_columns": ["solution"],
    }
    soft_overlong = {"max_completion_len": 1280, "soft_punish_cache": 256}  # as trl/scripts/grpo.py builds it
    assert section["reward"]["functions"][2] == {"function": "get_soft_overlong_punishment", "kwargs": soft_overlong}
    assert section["reward"]["weights"] == [1.0, 0.5, 0.5]
    assert section["training"]["loss_type"] == "dr_grpo" and section["training"]["report_to"] == "trackio"


def _word_problems(columns: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The shipped GSM8K-shaped problems as a hub dataset's splits, with a bare `solution` as TRL's accuracy reads."""
    splits = {}
    for split in ("train", "test"):
        frame = pd.read_parquet(PROJECT_ROOT / f"data/01_raw/word_problems/{split}.parquet")
        frame["solution"] = frame["answer"].str.extract(r"#### (.+)$", expand=False)
        frame["prompt"] = frame["question"].map(lambda question: [{"role": "user", "content": question}])
        splits[split] = frame.rename(columns=columns)[["problem" if "question" in columns else "prompt", "solution"]]
    return splits


@pytest.mark.kedro_run
@pytest.mark.trainer
def test_recipes_of_both_projects_import_and_run_offline_on_the_tiny_model(debug_project: Path) -> None:
    project = debug_project
    # The recipes as written, their datasets pointed at local copies (load_dataset reads a folder of split files).
    for folder, columns, splits in (
        ("deepmath", {}, ("train", "test")),
        ("openr1_math", {"question": "problem"}, ("train",)),
    ):
        (project / "data/01_raw" / folder).mkdir()
        for split, frame in _word_problems(columns).items():
            if split in splits:
                frame.to_parquet(project / f"data/01_raw/{folder}/{split}.parquet")
    open_r1 = yaml.safe_load((RECIPES / "open_r1_runnable.yaml").read_text())
    trl_cli = yaml.safe_load((RECIPES / "trl_grpo_cli.yaml").read_text())
    for name, recipe, dataset in (("r1_math", open_r1, "openr1_math"), ("deepmath", trl_cli, "deepmath")):
        recipe["dataset_name"] = f"data/01_raw/{dataset}"
        recipe.pop("dataset_config", None)  # the hub dataset's config: a local copy has none
        (project / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        imported = run_kedro(project, "import-recipe", f"{name}.yaml", "--name", name, "--tiny")
        output = imported.stdout
        assert f"Offline on the tiny model: kedro run --pipelines=grpo_{name} --env=tiny\n" in output, output
        assert "Your setup doesn't support bf16/gpu" in output  # the recipe as written asks for a GPU
        run_kedro(project, "run", "--env=tiny", f"--pipelines=grpo_{name}")
        report = json.loads((project / f"data/08_reporting/{name}/validation_report.json").read_text())
        assert report["global_step"] == 4 and report["status"] == "NO GATE", report["failures"]
        assert report["accuracy_reward"] == "accuracy_reward"
        (run,) = mlflow_runs(project, f"grpo_{name}")
        assert run.info.status == "FINISHED"
    assert report["adapter"] is True and report["eval_prompts"] == 8  # deepmath: LoRA, its own test split
    assert set(report["reward_weights"]) == {
        "accuracy_reward",
        "think_format_reward",
        "soft_overlong_punishment_reward",
    }
    assert (project / "conf/base/deepmath/catalog.yml").is_file() and not (project / "src/deepmath").exists()
    # A second import under a name in use is refused.
    again = invoke_kedro(project, "import-recipe", "deepmath.yaml", "--name", "full", "--env", "local")
    assert again.returncode == 1 and "a variant 'full' is already defined in conf/base/full;" in again.stderr
    assert not (project / "conf/local/full").exists()

"""Kedro project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import os
import warnings

from kedro.config import OmegaConfigLoader

from grpo_pipeline.hooks import ParameterValidationHooks, RunSummaryHooks

# kedro-mlflow registers its own hooks through its plugin entry point.
HOOKS = (ParameterValidationHooks(), RunSummaryHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    # `local` is per machine and git-ignored; `gpu` is selected with `kedro run --env=gpu`.
    "default_run_env": "local",
    # Environments override single keys (e.g. gpu sets full.training.bf16) instead of whole variants.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}

# Known-harmless warnings from dependencies, silenced one by one by message (never wholesale):
# OmegaConf's resolver rename (raised inside kedro and kedro-mlflow) and mlflow's pyfunc type-hint
# advice for kedro-mlflow's model class.
for _message in (
    r"register_new_resolver\(\) is deprecated",
    r"Add type hints to the `predict` method",
):
    warnings.filterwarnings("ignore", message=_message)

# transformers' per-file bars ("Loading weights", "Writing model shards") repeat for every model the
# pipeline loads or saves; the training progress bar is the one a person follows. Read by
# huggingface_hub when first imported, which the pipelines do after this module.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

"""Kedro project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from grpo_pipeline.runtime import configure_runtime

# Before any library these settings affect is imported: Kedro imports settings first.
configure_runtime()

from grpo_pipeline.config import loader  # noqa: E402
from grpo_pipeline.hooks import (  # noqa: E402
    LineageHooks,
    ReadableRunHooks,
    RunChecksHooks,
    RunRecordHooks,
    RunSummaryHooks,
)

# kedro-mlflow registers its own hooks through its plugin entry point.
HOOKS = (RunChecksHooks(), RunRecordHooks(), ReadableRunHooks(), LineageHooks(), RunSummaryHooks())

CONFIG_LOADER_CLASS = loader.VariantConfigLoader
CONFIG_LOADER_ARGS = loader.CONFIG_LOADER_ARGS

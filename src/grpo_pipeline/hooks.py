"""Project hooks: parameter validation before anything runs, and a closing summary of the run.

The training libraries are imported inside the hooks that need them: Kedro imports this module (through
settings.py) for every command, including those that only read the pipeline graph.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import yaml
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from grpo_pipeline.config.params import parse_training_params, parse_variant_params
from grpo_pipeline.config.schema import TrainingParams, VariantParams
from grpo_pipeline.training.fingerprint import check_resume, run_fingerprint

logger = logging.getLogger(__name__)


def _variants(pipeline: Pipeline) -> list[str]:
    return sorted({node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace})


class ParameterValidationHooks:
    """Parse every variant's parameters (and check the rollout and vLLM when asked for) before the first node runs.

    Nothing is trained or written on bad input, and a vLLM server that is not up fails the run at once.
    The resolved parameters (shared defaults, the variant's own values, schema defaults) are logged.
    """

    # tryfirst: before kedro-mlflow's hook opens an MLflow run for a pipeline that will not run.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        node_names = {node.name for node in pipeline.nodes}
        for variant in _variants(pipeline):
            raw = catalog.load(f"params:{variant}")
            params = parse_variant_params(raw, variant)
            logger.info(
                "Resolved parameters of variant '%s':\n%s",
                variant,
                yaml.safe_dump({variant: params.model_dump(mode="json")}, sort_keys=False),
            )
            if f"{variant}.train_grpo" in node_names:
                training, _ = parse_training_params(raw["training"], f"{variant}.training")
                self._check_training(params, training, variant)

    @staticmethod
    def _check_training(params: VariantParams, training: TrainingParams, variant: str) -> None:
        """The rollout resolves, vLLM can work, and an auto-resume would continue this very run."""
        from grpo_pipeline.training.checkpoints import (  # noqa: PLC0415 (imports transformers)
            is_auto_resume,
            read_marker,
            resolve_resume_checkpoint,
        )
        from grpo_pipeline.training.rollouts import check_rollout_func  # noqa: PLC0415 (imports TRL)
        from grpo_pipeline.training.vllm_preflight import check_vllm_generation  # noqa: PLC0415 (same)

        check_rollout_func(training, f"{variant}.training")
        check_vllm_generation(training, params.model.name_or_path, variant)
        checkpoint = resolve_resume_checkpoint(training.resume_from_checkpoint, training.output_dir)
        if checkpoint is not None and is_auto_resume(training.resume_from_checkpoint):
            # The formatted data does not exist yet; training compares its hash once it does.
            current = run_fingerprint(params.model, params.peft, training, params.reward, params.seed)
            check_resume(checkpoint, read_marker(checkpoint).get("fingerprint"), current, f"{variant}.training")


class RunSummaryHooks:
    """Print what a person wants after ``kedro run``: rewards before/after, wall time, where outputs went."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        self._started = time.perf_counter()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        import mlflow  # noqa: PLC0415 (see the module doc)

        wall = time.perf_counter() - self._started
        lines = [f"Run finished in {wall:.1f} s."]
        for variant in _variants(pipeline):
            report_name = f"{variant}.validation_report"
            if report_name not in pipeline.all_outputs() or not catalog.exists(report_name):
                continue
            report = catalog.load(report_name)
            lines.append(
                f"[{variant}] eval reward base {report['base']['mean_reward']:.3f} -> trained "
                f"{report['trained']['mean_reward']:.3f} ({report['reward_gain']:+.3f}) on {report['eval_prompts']} "
                f"held-out prompts; checkpoint: {report['checkpoint']}"
            )
        run = mlflow.active_run() or mlflow.last_active_run()
        if run is not None:
            lines.append(
                f"MLflow run '{run.info.run_name}' ({run.info.run_id}) in {mlflow.get_tracking_uri()}; "
                "browse it with `kedro mlflow ui`."
            )
        print("\n".join(["", "=" * 30 + " grpo-pipeline summary " + "=" * 30, *lines, "=" * 83]), flush=True)

"""Nodes of the GRPO pipeline: each takes its data and the variant's resolved run configuration, calls the library,
and returns.

The library modules are imported inside the nodes: they load torch, transformers, TRL, peft or MLflow,
which building the pipeline graph (``kedro registry list``, ``kedro viz``, the start of ``kedro run``)
must not pay for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from grpo_pipeline.config.run_config import RunConfig, resolved_once
from grpo_pipeline.models.checkpoint import HFCheckpoint
from grpo_pipeline.prompts import format_splits, split_prompts


def resolve_run_config(variant_parameters: dict[str, Any], variant: str) -> RunConfig:
    """The variant's parameters parsed, checked and resolved (rewards, TRL's configs), once per run."""
    return resolved_once(variant_parameters, variant)


def prepare_prompts(raw_prompts: pd.DataFrame, run_config: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every row (and the columns the rewards declare checks for), normalise, dedupe, split with the seed."""
    params = run_config.params
    return split_prompts(raw_prompts, params.data, params.seed, run_config.rewards.column_checks())


def resolve_base_model(run_config: RunConfig) -> str:
    """Where the base model is: built here when ``model.build_tiny`` or ``model.from_gguf`` is set, otherwise a hub
    id or path."""
    from grpo_pipeline.models.loading import ensure_base_model

    return ensure_base_model(run_config.params.model)


def format_prompts(
    train_prompts: pd.DataFrame, eval_prompts: pd.DataFrame, base_model_path: str, run_config: RunConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Apply the chat template, measure prompt lengths in tokens, and drop prompts over the limit."""
    from grpo_pipeline.models.loading import load_tokenizer

    model = run_config.params.model
    tokenizer = load_tokenizer(base_model_path, model.revision, model.trust_remote_code)
    return format_splits(
        train_prompts,
        eval_prompts,
        tokenizer,
        run_config.params.formatting,
        run_config.tools,
        run_config.grpo_config.chat_template_kwargs,
    )


def warm_start(train_dataset: pd.DataFrame, base_model_path: str, run_config: RunConfig) -> str:
    """The model GRPO starts from: the base model, or with ``warm_start`` set, the base model after a short
    supervised warm start on the training split's solved examples (reused while nothing changed)."""
    if run_config.params.warm_start is None:
        return base_model_path
    from grpo_pipeline.training.warm_start import ensure_warm_start

    return ensure_warm_start(train_dataset, base_model_path, run_config)


def train_grpo(
    train_dataset: pd.DataFrame, eval_dataset: pd.DataFrame, base_model_path: str, run_config: RunConfig
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune with ``trl.GRPOTrainer`` (LoRA when ``peft`` is set, resuming a crashed run, under
    ``accelerate launch`` for ``distributed.num_processes`` > 1, scoring ``eval_dataset`` every ``eval_steps``
    when ``training.eval_strategy`` says so); return checkpoint, metrics, timings, samples."""
    from grpo_pipeline.training.distributed import run_training
    from grpo_pipeline.training.mlflow_logging import active_run_id, tracking_uri
    from grpo_pipeline.training.run import TrainingRequest

    request = TrainingRequest(train_dataset, base_model_path, run_config, eval_dataset)
    result = run_training(request, tracking_uri(), active_run_id())
    return result.checkpoint, result.metrics, result.timings, result.completion_samples


def validate_checkpoint(
    checkpoint: HFCheckpoint, base_model_path: str, eval_dataset: pd.DataFrame, run_config: RunConfig
) -> tuple[dict[str, Any], str]:
    """Score the checkpoint reloaded from disk against the base model (the warm-started one, with a warm start)
    on the held-out prompts, greedy and sampled as in training (the seed fixes the samples).

    The report is returned (and so saved) whether or not the checkpoint passes; ``check_validation`` fails the run.
    """
    from grpo_pipeline.reporting import validation_markdown
    from grpo_pipeline.training.mlflow_logging import active_run_id
    from grpo_pipeline.validation import validate_against_base

    report = validate_against_base(checkpoint, base_model_path, eval_dataset, run_config, active_run_id()).to_dict()
    return report, validation_markdown(report)


def check_validation(validation_report: dict[str, Any], registered_model: dict[str, Any]) -> None:
    """Fail the run when the saved validation report says the checkpoint did not pass (once ``registered_model``
    is recorded: a failed validation withdraws the registry's alias)."""
    from grpo_pipeline.validation import raise_if_failed

    raise_if_failed(validation_report)


def register_model(
    checkpoint: HFCheckpoint, validation_report: dict[str, Any], run_config: RunConfig
) -> dict[str, Any]:
    """Log the checkpoint that passed validation to MLflow as a model and register it under the variant's name, with
    its alias; the record of what was registered, or why nothing was."""
    registry = run_config.params.model_registry
    if not registry.enabled:
        return {"registered": False, "reason": "model_registry.enabled is false"}
    if (rank := run_config.params.distributed.machine_rank) != 0:
        return {"registered": False, "reason": f"machine {rank} validates; the main machine (rank 0) registers"}
    from grpo_pipeline.models.registry import register_validated_model
    from grpo_pipeline.training.mlflow_logging import active_run_id

    name = registry.name or run_config.variant
    return register_validated_model(checkpoint, validation_report, name, registry.alias, active_run_id())


def plot_reward_curve(training_metrics: pd.DataFrame, run_config: RunConfig) -> Any:
    """A matplotlib figure: mean reward per step with its spread across the group, and each reward's mean."""
    from grpo_pipeline.reporting import reward_curve_figure

    return reward_curve_figure(training_metrics, run_config.rewards.names)


def benchmark_run(training_timings: dict[str, Any], run_config: RunConfig) -> tuple[pd.DataFrame, str]:
    """One row of the benchmark table (the seed's mode / steps / wall time / s/step, and more)."""
    from grpo_pipeline.reporting import benchmark_markdown, benchmark_table

    table = benchmark_table(training_timings, run_config.params.benchmark.mode)
    return table, benchmark_markdown(table)


def render_completion_samples(training_completions: list[dict[str, Any]]) -> str:
    """The sampled completions as an HTML table a person can read in MLflow's artifact viewer."""
    from grpo_pipeline.reporting import completion_samples_html

    return completion_samples_html(training_completions)

"""Nodes of the GRPO pipeline: each parses its ``params:`` sections, calls the library, and returns.

The library modules are imported inside the nodes: they load torch, transformers, TRL, peft or MLflow,
which building the pipeline graph (``kedro registry list``, ``kedro viz``, the start of ``kedro run``)
must not pay for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from grpo_pipeline.config.params import parse_training_params
from grpo_pipeline.config.schema import (
    BenchmarkParams,
    DataParams,
    DistributedParams,
    FormattingParams,
    ModelParams,
    PeftParams,
    RewardParams,
    RunParams,
    ValidationParams,
    WarmStartParams,
    parse_section,
)
from grpo_pipeline.models.checkpoint import HFCheckpoint
from grpo_pipeline.prompts import format_splits, split_prompts
from grpo_pipeline.rewards import reward_column_checks, reward_metric_names


def prepare_prompts(
    raw_prompts: pd.DataFrame, data: dict[str, Any], reward: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every row (and the columns the rewards declare checks for), normalise, dedupe, split with ``seed``."""
    checks = reward_column_checks(parse_section(RewardParams, reward, "reward"))
    return split_prompts(raw_prompts, parse_section(DataParams, data, "data"), seed, checks)


def resolve_base_model(model: dict[str, Any]) -> str:
    """Where the base model is: built here when ``model.build_tiny`` is set, otherwise a hub id or path."""
    from grpo_pipeline.models.tiny import ensure_base_model

    return ensure_base_model(parse_section(ModelParams, model, "model"))


def format_prompts(
    train_prompts: pd.DataFrame,
    eval_prompts: pd.DataFrame,
    base_model_path: str,
    model: dict[str, Any],
    formatting: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Apply the chat template, measure prompt lengths in tokens, and drop prompts over the limit."""
    from grpo_pipeline.models.loading import load_tokenizer

    model_params = parse_section(ModelParams, model, "model")
    tokenizer = load_tokenizer(base_model_path, model_params.revision, model_params.trust_remote_code)
    return format_splits(
        train_prompts, eval_prompts, tokenizer, parse_section(FormattingParams, formatting, "formatting")
    )


def warm_start(
    train_dataset: pd.DataFrame,
    base_model_path: str,
    model: dict[str, Any],
    warm_start: dict[str, Any] | None,
    seed: int,
) -> str:
    """The model GRPO starts from: the base model, or with ``warm_start`` set, the base model after a short
    supervised warm start on the training split's solved examples (reused while nothing changed)."""
    if warm_start is None:
        return base_model_path
    from grpo_pipeline.training.warm_start import ensure_warm_start

    params = parse_section(WarmStartParams, warm_start, "warm_start")
    return ensure_warm_start(train_dataset, base_model_path, parse_section(ModelParams, model, "model"), params, seed)


def train_grpo(
    train_dataset: pd.DataFrame,
    eval_dataset: pd.DataFrame,
    base_model_path: str,
    model: dict[str, Any],
    peft: dict[str, Any] | None,
    training: dict[str, Any],
    reward: dict[str, Any],
    seed: int,
    distributed: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    warm_start: dict[str, Any] | None = None,
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune with ``trl.GRPOTrainer`` (LoRA when ``peft`` is set, resuming a crashed run, under
    ``accelerate launch`` for ``distributed.num_processes`` > 1, scoring ``eval_dataset`` every ``eval_steps``
    when ``training.eval_strategy`` says so); return checkpoint, metrics, timings, samples."""
    from grpo_pipeline.training.distributed import run_training
    from grpo_pipeline.training.mlflow_logging import active_run_id, tracking_uri
    from grpo_pipeline.training.run import TrainingRequest

    run_params = parse_section(RunParams, run, "run")
    training_params, seed_config_mapping = parse_training_params(training, run_params)
    request = TrainingRequest(
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        base_model_path=base_model_path,
        model=parse_section(ModelParams, model, "model"),
        peft=None if peft is None else parse_section(PeftParams, peft, "peft"),
        training=training_params,
        run=run_params,
        warm_start=None if warm_start is None else parse_section(WarmStartParams, warm_start, "warm_start"),
        reward=parse_section(RewardParams, reward, "reward"),
        seed=seed,
        seed_config_mapping=seed_config_mapping,
    )
    distributed_params = parse_section(DistributedParams, distributed, "distributed")
    result = run_training(request, distributed_params, tracking_uri(), active_run_id())
    return result.checkpoint, result.metrics, result.timings, result.completion_samples


def validate_checkpoint(
    checkpoint: HFCheckpoint,
    base_model_path: str,
    eval_dataset: pd.DataFrame,
    model: dict[str, Any],
    reward: dict[str, Any],
    validation: dict[str, Any],
    seed: int = 0,
) -> tuple[dict[str, Any], str]:
    """Score the checkpoint reloaded from disk against the base model (the warm-started one, with a warm start)
    on the held-out prompts, greedy and sampled as in training (``seed`` fixes the samples).

    The report is returned (and so saved) whether or not the checkpoint passes; ``check_validation`` fails the run.
    """
    from grpo_pipeline.reporting import validation_markdown
    from grpo_pipeline.training.mlflow_logging import active_run_id
    from grpo_pipeline.validation import validate_against_base

    report = validate_against_base(
        checkpoint,
        base_model_path,
        eval_dataset,
        parse_section(ModelParams, model, "model"),
        parse_section(RewardParams, reward, "reward"),
        parse_section(ValidationParams, validation, "validation"),
        seed,
        active_run_id(),
    )
    return report, validation_markdown(report)


def check_validation(validation_report: dict[str, Any]) -> None:
    """Fail the run when the saved validation report says the checkpoint did not pass."""
    from grpo_pipeline.validation import raise_if_failed

    raise_if_failed(validation_report)


def plot_reward_curve(training_metrics: pd.DataFrame, reward: dict[str, Any]) -> Any:
    """A matplotlib figure: mean reward per step with its spread across the group, and each reward's mean."""
    from grpo_pipeline.reporting import reward_curve_figure

    return reward_curve_figure(training_metrics, reward_metric_names(parse_section(RewardParams, reward, "reward")))


def benchmark_run(training_timings: dict[str, Any], benchmark: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """One row of the benchmark table (the seed's mode / steps / wall time / s/step, and more)."""
    from grpo_pipeline.reporting import benchmark_markdown, benchmark_table

    table = benchmark_table(training_timings, parse_section(BenchmarkParams, benchmark, "benchmark").mode)
    return table, benchmark_markdown(table)


def render_completion_samples(training_completions: list[dict[str, Any]]) -> str:
    """The sampled completions as an HTML table a person can read in MLflow's artifact viewer."""
    from grpo_pipeline.reporting import completion_samples_html

    return completion_samples_html(training_completions)

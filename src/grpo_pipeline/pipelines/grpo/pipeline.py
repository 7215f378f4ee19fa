"""The GRPO modular pipeline. ``create_pipeline(namespace=...)`` gives one variant (see grpo_pipeline/variants.py)."""

from __future__ import annotations

import functools

from kedro.pipeline import Node, Pipeline

from grpo_pipeline.pipelines.grpo import nodes

# Stage tags: `kedro run --pipeline=grpo_debug_<stage>` runs one stage against persisted inputs.
STAGES = ("prepare", "train", "validate", "report")
# The node input that is the variant's whole parameter section (`params:<variant>` once namespaced).
VARIANT_PARAMETERS = "params:variant_parameters"


def _resolver(variant: str | None) -> functools.partial:
    """The run-configuration node's function for ``variant`` (its name goes into parameter messages)."""
    resolve = functools.partial(nodes.resolve_run_config, variant=variant or "variant")
    return functools.update_wrapper(resolve, nodes.resolve_run_config)


def create_pipeline(namespace: str | None = None, **kwargs: object) -> Pipeline:
    base = Pipeline(
        [
            Node(
                _resolver(namespace),
                inputs=VARIANT_PARAMETERS,
                outputs="run_config",
                name="resolve_run_config",
                tags=list(STAGES),
            ),
            Node(
                nodes.prepare_prompts,
                inputs=["raw_prompts", "run_config"],
                outputs=["train_prompts", "eval_prompts"],
                name="prepare_prompts",
                tags="prepare",
            ),
            Node(
                nodes.resolve_base_model,
                inputs="run_config",
                outputs="base_model_path",
                name="resolve_base_model",
                tags=["prepare", "train", "validate"],
            ),
            Node(
                nodes.format_prompts,
                inputs=["train_prompts", "eval_prompts", "base_model_path", "run_config"],
                outputs=["train_dataset", "eval_dataset", "prompt_length_stats"],
                name="format_prompts",
                tags="prepare",
            ),
            Node(
                nodes.warm_start,
                inputs=["train_dataset", "base_model_path", "run_config"],
                outputs="start_model_path",
                name="warm_start",
                tags=["train", "validate"],
            ),
            Node(
                nodes.train_grpo,
                inputs=["train_dataset", "eval_dataset", "start_model_path", "run_config"],
                outputs=["checkpoint", "training_metrics", "training_timings", "training_completions"],
                name="train_grpo",
                tags="train",
            ),
            Node(
                nodes.validate_checkpoint,
                inputs=["checkpoint", "start_model_path", "eval_dataset", "run_config"],
                outputs=["validation_report", "validation_report_md"],
                name="validate_checkpoint",
                tags="validate",
            ),
            Node(
                nodes.check_validation,
                # After register_model, which withdraws the alias from a model whose validation failed.
                inputs=["validation_report", "registered_model"],
                outputs=None,
                name="check_validation",
                tags="validate",
            ),
            Node(
                nodes.register_model,
                inputs=["checkpoint", "validation_report", "run_config"],
                outputs="registered_model",
                name="register_model",
                tags="validate",
            ),
            Node(
                nodes.plot_reward_curve,
                inputs=["training_metrics", "run_config"],
                outputs="reward_curve",
                name="plot_reward_curve",
                tags="report",
            ),
            Node(
                nodes.render_completion_samples,
                inputs="training_completions",
                outputs="training_completions_html",
                name="render_completion_samples",
                tags="report",
            ),
            Node(
                nodes.benchmark_run,
                inputs=["training_timings", "run_config"],
                outputs=["benchmark_table", "benchmark_table_md"],
                name="benchmark_run",
                tags="report",
            ),
        ]
    )
    if namespace is None:
        return base
    return Pipeline(base, namespace=namespace, parameters={VARIANT_PARAMETERS: f"params:{namespace}"})

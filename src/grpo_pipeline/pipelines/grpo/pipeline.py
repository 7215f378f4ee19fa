"""The GRPO modular pipeline. ``create_pipeline(namespace=...)`` gives one variant (see grpo_pipeline/variants.py)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grpo_pipeline.pipelines.grpo import nodes

# Stage tags: `kedro run --pipeline=grpo_debug_<stage>` runs one stage against persisted inputs.
STAGES = ("prepare", "train", "validate", "report")


def create_pipeline(namespace: str | None = None, **kwargs: object) -> Pipeline:
    base = Pipeline(
        [
            Node(
                nodes.prepare_prompts,
                inputs=["raw_prompts", "params:data", "params:reward", "params:seed"],
                outputs=["train_prompts", "eval_prompts"],
                name="prepare_prompts",
                tags="prepare",
            ),
            Node(
                nodes.resolve_base_model,
                inputs="params:model",
                outputs="base_model_path",
                name="resolve_base_model",
                tags=["prepare", "train", "validate"],
            ),
            Node(
                nodes.format_prompts,
                inputs=["train_prompts", "eval_prompts", "base_model_path", "params:model", "params:formatting"],
                outputs=["train_dataset", "eval_dataset", "prompt_length_stats"],
                name="format_prompts",
                tags="prepare",
            ),
            Node(
                nodes.warm_start,
                inputs=["train_dataset", "base_model_path", "params:model", "params:warm_start", "params:seed"],
                outputs="start_model_path",
                name="warm_start",
                tags=["train", "validate"],
            ),
            Node(
                nodes.train_grpo,
                inputs=[
                    "train_dataset",
                    "eval_dataset",
                    "start_model_path",
                    "params:model",
                    "params:peft",
                    "params:training",
                    "params:reward",
                    "params:seed",
                    "params:distributed",
                    "params:run",
                    "params:warm_start",
                ],
                outputs=["checkpoint", "training_metrics", "training_timings", "training_completions"],
                name="train_grpo",
                tags="train",
            ),
            Node(
                nodes.validate_checkpoint,
                inputs=[
                    "checkpoint",
                    "start_model_path",
                    "eval_dataset",
                    "params:model",
                    "params:reward",
                    "params:validation",
                    "params:seed",
                ],
                outputs=["validation_report", "validation_report_md"],
                name="validate_checkpoint",
                tags="validate",
            ),
            Node(
                nodes.check_validation,
                inputs="validation_report",
                outputs=None,
                name="check_validation",
                tags="validate",
            ),
            Node(
                nodes.plot_reward_curve,
                inputs=["training_metrics", "params:reward"],
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
                inputs=["training_timings", "params:benchmark"],
                outputs=["benchmark_table", "benchmark_table_md"],
                name="benchmark_run",
                tags="report",
            ),
        ]
    )
    if namespace is None:
        return base
    return Pipeline(base, namespace=namespace)

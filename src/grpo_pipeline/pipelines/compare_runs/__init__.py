"""Compare finished GRPO runs from the MLflow store."""

from grpo_pipeline.pipelines.compare_runs.pipeline import create_pipeline

__all__ = ["create_pipeline"]

"""The GRPO fine-tuning modular pipeline."""

from grpo_pipeline.pipelines.grpo.pipeline import STAGES, create_pipeline

__all__ = ["STAGES", "create_pipeline"]

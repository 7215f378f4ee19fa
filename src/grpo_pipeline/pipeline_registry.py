"""The project's pipelines: one GRPO pipeline instantiated per variant, its stage slices, and compare_runs."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from grpo_pipeline.pipelines import compare_runs, grpo

VARIANTS = ("debug", "full", "lora")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {}
    for variant in VARIANTS:
        variant_pipeline = grpo.create_pipeline(namespace=variant)
        pipelines[f"grpo_{variant}"] = variant_pipeline
        for stage in grpo.STAGES:
            pipelines[f"grpo_{variant}_{stage}"] = variant_pipeline.only_nodes_with_tags(stage)
    pipelines["compare_runs"] = compare_runs.create_pipeline()
    pipelines["__default__"] = pipelines["grpo_debug"]
    return pipelines

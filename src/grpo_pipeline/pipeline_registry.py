"""The project's pipelines: one GRPO pipeline instantiated per variant found in ``conf/`` (variants.py), its stage
slices, and compare_runs."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from grpo_pipeline.pipelines import compare_runs, grpo
from grpo_pipeline.variants import DEFAULT_VARIANT, pipeline_name, variant_names


def register_pipelines() -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {}
    for variant in variant_names():
        variant_pipeline = grpo.create_pipeline(namespace=variant)
        pipelines[pipeline_name(variant)] = variant_pipeline
        for stage in grpo.STAGES:
            pipelines[f"{pipeline_name(variant)}_{stage}"] = variant_pipeline.only_nodes_with_tags(stage)
    pipelines["compare_runs"] = compare_runs.create_pipeline()
    if pipeline_name(DEFAULT_VARIANT) in pipelines:
        pipelines["__default__"] = pipelines[pipeline_name(DEFAULT_VARIANT)]
    return pipelines

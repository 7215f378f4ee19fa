"""Parsing a variant's parameters: the typed schema plus the optional PPO-era seed-config overlay."""

from __future__ import annotations

from typing import Any

from grpo_pipeline.config.schema import RunParams, TrainingParams, VariantParams, parse_section, sibling_section
from grpo_pipeline.config.seed_overlay import apply_seed_config


def parse_training_params(
    raw: dict[str, Any], run: RunParams, prefix: str = "training"
) -> tuple[TrainingParams, list[str]]:
    """Typed training parameters, with ``run.seed_config`` applied when set, and the overlay's mapping lines."""
    params = parse_section(TrainingParams, raw, prefix)
    if run.seed_config is None:
        return params, []
    merged, mapping = apply_seed_config(params.model_dump(), run.seed_config, sibling_section(prefix, "run"))
    return parse_section(TrainingParams, merged, prefix), mapping


def parse_variant_params(raw: dict[str, Any], variant: str) -> VariantParams:
    """Every section of ``variant``'s parameters, its training with the seed-config overlay applied; raises one
    ParameterError on problems."""
    params = parse_section(VariantParams, raw, variant)
    if params.run.seed_config is None:
        return params
    training, _ = parse_training_params(raw["training"], params.run, f"{variant}.training")
    return params.model_copy(update={"training": training})

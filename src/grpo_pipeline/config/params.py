"""Parsing a variant's parameters: the typed schema plus the optional PPO-era seed-config overlay."""

from __future__ import annotations

from typing import Any

from grpo_pipeline.config.schema import TrainingParams, VariantParams, parse_section
from grpo_pipeline.config.seed_overlay import apply_seed_config


def parse_training_params(raw: dict[str, Any], prefix: str = "training") -> tuple[TrainingParams, list[str]]:
    """Typed training parameters, with ``seed_config`` applied when set, and the overlay's mapping lines."""
    params = parse_section(TrainingParams, raw, prefix)
    if params.seed_config is None:
        return params, []
    merged, mapping = apply_seed_config(params.model_dump(), prefix)
    return parse_section(TrainingParams, merged, prefix), mapping


def parse_variant_params(raw: dict[str, Any], variant: str) -> VariantParams:
    """Every section of ``variant``'s parameters, its training with the seed-config overlay applied; raises one
    ParameterError on problems."""
    params = parse_section(VariantParams, raw, variant)
    if params.training.seed_config is None:
        return params
    training, _ = parse_training_params(raw["training"], f"{variant}.training")
    return params.model_copy(update={"training": training})

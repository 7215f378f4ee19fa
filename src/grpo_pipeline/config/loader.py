"""Kedro's config loader with shared variant defaults: each variant's parameters are ``variant_defaults``
with the variant's own values deep-merged over them.

So a variant file holds only what sets it apart, every other value is written once, and everything that
reads parameters through Kedro (nodes, hooks, kedro-mlflow's logged params, kedro-viz) sees the
effective values. Merging happens after Kedro has merged environments and ``--params``, so
``--params=full.training.learning_rate=...`` overrides one variant and ``--params=variant_defaults....``
all of them. ``{variant}`` stands for the variant's name (e.g. in output paths), in the defaults and a
variant's own values alike. A variant whose section says ``extends: <other>`` starts from the other
variant's own values instead of the defaults alone (``conf/tiny`` runs full and LoRA as ``debug`` runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from grpo_pipeline.errors import ParameterError, invalid_parameters
from grpo_pipeline.variants import DEFAULTS_KEY, VARIANT_PLACEHOLDER, find_variants

# `extends: debug` in a variant's section: that variant's own values under this one's (see conf/tiny).
EXTENDS_KEY = "extends"
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    # `local` is per machine and git-ignored; `gpu` is selected with `kedro run --env=gpu`.
    "default_run_env": "local",
    # Environments override single keys (e.g. gpu sets full.training.bf16) instead of whole variants.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``: mappings merge key by key, anything else (lists, null) replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both_mappings else value
    return merged


def for_variant(value: Any, variant: str) -> Any:
    """``value`` with ``{variant}`` in its strings replaced by the variant's name (as in Kedro's dataset factories)."""
    if isinstance(value, str):
        return value.replace(VARIANT_PLACEHOLDER, variant)
    if isinstance(value, dict):
        return {key: for_variant(item, variant) for key, item in value.items()}
    if isinstance(value, list):
        return [for_variant(item, variant) for item in value]
    return value


class VariantExtendsError(ParameterError):
    """A variant's ``extends`` names no variant, or variants that extend each other in a loop."""


def own_values(
    parameters: dict[str, Any], variant: str, variants: Sequence[str], extending: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``variant``'s own section, over the section of the variant it ``extends`` (one of ``variants``, if any),
    recursively."""
    own = dict(parameters.get(variant) or {})
    base = own.pop(EXTENDS_KEY, None)
    if base is None:
        return own
    if base not in variants:
        others = [name for name in variants if name != variant]
        problem = f"parameter '{variant}.{EXTENDS_KEY}' = {base!r} is not a variant; name one of {others}"
        raise invalid_parameters([problem], VariantExtendsError)
    if base in (*extending, variant):
        loop = " -> ".join((*extending, variant, base))
        problem = (
            f"parameter '{variant}.{EXTENDS_KEY}' = {base!r} closes a loop ({loop}); a variant may extend only one "
            "that extends none of them"
        )
        raise invalid_parameters([problem], VariantExtendsError)
    return deep_merge(own_values(parameters, base, variants, (*extending, variant)), own)


def with_variant_defaults(parameters: dict[str, Any], variants: Sequence[str]) -> dict[str, Any]:
    """``parameters`` with the section of each of ``variants`` that has one merged over the shared
    ``variant_defaults`` (and over the section of the variant it ``extends``, when it names one)."""
    defaults = parameters.get(DEFAULTS_KEY) or {}
    merged = {
        variant: for_variant(deep_merge(defaults, own_values(parameters, variant, variants)), variant)
        for variant in variants
        if variant in parameters
    }
    return {**parameters, **merged}


class VariantConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` whose ``parameters`` carry the shared variant defaults (see the module doc); the
    variants are those defined in the environments it reads (grpo_pipeline/variants.py)."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        return with_variant_defaults(config, self.variants()) if key == "parameters" else config

    def variants(self) -> list[str]:
        environments = (self.base_env, self.env or self.default_run_env)
        return sorted(find_variants(Path(self.conf_source), [env for env in environments if env]))


def load_parameters(
    conf_source: str | Path, env: str | None = None, runtime_params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The project's parameters as ``kedro run --env ENV --params ...`` sees them, without a Kedro session."""
    loader = VariantConfigLoader(
        conf_source=str(conf_source), env=env, runtime_params=runtime_params, **CONFIG_LOADER_ARGS
    )
    return loader["parameters"]

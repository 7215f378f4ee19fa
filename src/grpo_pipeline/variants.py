"""The variants: the one GRPO pipeline instantiated under each of these namespaces, and their names.

Adding a variant is one name here plus ``conf/base/<name>/parameters.yml`` holding only what sets it
apart from ``variant_defaults`` in ``conf/base/parameters.yml`` (see docs/configuration.md, "Adding a variant").
"""

from __future__ import annotations

VARIANTS: tuple[str, ...] = ("debug", "full", "lora", "reasoning")
# The variant `kedro run` runs without --pipelines.
DEFAULT_VARIANT = "debug"
# The parameters every variant starts from, deep-merged under each variant's own (config/loader.py).
DEFAULTS_KEY = "variant_defaults"


def pipeline_name(variant: str) -> str:
    """The registered pipeline of ``variant``, also its MLflow run name."""
    return f"grpo_{variant}"

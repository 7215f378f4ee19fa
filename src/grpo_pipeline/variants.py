"""The variants: the one GRPO pipeline instantiated under each of these namespaces, found in configuration.

A variant is a folder ``conf/<env>/<name>/`` whose parameters file (``parameters*.yml``, as Kedro reads it)
has a ``<name>:`` section; the folder may hold the variant's own ``catalog.yml`` beside it (its data source),
so one folder is one experiment. Nothing in the package lists them: the registry, ``compare_runs``, ``make
vllm-serve`` and the config loader all ask :func:`find_variants` (see docs/configuration.md, "Adding a variant").
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

# The variant `kedro run` runs without --pipelines.
DEFAULT_VARIANT = "debug"
# The parameters every variant starts from, deep-merged under each variant's own (config/loader.py).
DEFAULTS_KEY = "variant_defaults"
# Folders of configuration that belong to the project's other pipelines, not to a variant.
OTHER_PIPELINES = ("compare_runs",)
PIPELINE_PREFIX = "grpo_"
PARAMETER_FILES = ("parameters*.yml", "parameters*.yaml")


def pipeline_name(variant: str) -> str:
    """The registered pipeline of ``variant``, also its MLflow run name."""
    return f"{PIPELINE_PREFIX}{variant}"


def conf_root() -> Path:
    """The configuration folder of the Kedro project this process works in (found upwards from the working
    directory, as the ``kedro`` command finds its project)."""
    from kedro.framework.project import settings  # noqa: PLC0415 (Kedro's settings, read when asked)
    from kedro.utils import find_kedro_project  # noqa: PLC0415

    project = find_kedro_project(Path.cwd()) or Path.cwd()
    return project / settings.CONF_SOURCE


def _defines_itself(folder: Path) -> bool:
    """Whether a parameters file in ``folder`` has a section named after the folder."""
    for pattern in PARAMETER_FILES:
        for path in sorted(folder.glob(pattern)):
            try:
                content = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                continue  # Kedro's loader reports the broken file when the run reads it
            if isinstance(content, dict) and folder.name in content:
                return True
    return False


def find_variants(conf: Path | None = None, environments: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Every variant in ``conf`` (default :func:`conf_root`) and the folders that define it, by name; only the
    ``environments`` named, when given (default: every environment folder)."""
    conf = conf_root() if conf is None else conf
    if not conf.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    chosen = None if environments is None else set(environments)
    for environment in sorted(path for path in conf.iterdir() if path.is_dir()):
        if chosen is not None and environment.name not in chosen:
            continue
        for folder in sorted(path for path in environment.iterdir() if path.is_dir()):
            if folder.name not in OTHER_PIPELINES and folder.name != DEFAULTS_KEY and _defines_itself(folder):
                found.setdefault(folder.name, []).append(folder)
    return found


def variant_names(conf: Path | None = None) -> list[str]:
    """The names of every variant in ``conf`` (default :func:`conf_root`), sorted."""
    return sorted(find_variants(conf))


def describe_variants(conf: Path | None = None) -> str:
    """``grpo_debug (conf/base/debug), ...``: each variant's pipeline and where it is defined, for messages."""
    conf = conf_root() if conf is None else conf
    base = conf.parent
    return ", ".join(
        f"{pipeline_name(name)} ({', '.join(str(folder.relative_to(base)) for folder in folders)})"
        for name, folders in sorted(find_variants(conf).items())
    )


def unknown_variant(variant: str, conf: Path | None = None) -> str | None:
    """What to say when ``variant`` is not one of ``conf``'s (default :func:`conf_root`), or None when it is."""
    conf = conf_root() if conf is None else conf
    if variant in find_variants(conf):
        return None
    return (
        f"no variant '{variant}' in {conf.name}/: the variants are {describe_variants(conf) or 'none'}. A variant is a "
        f"folder conf/<env>/<name>/ whose parameters.yml has a '<name>:' section (docs/configuration.md)"
    )

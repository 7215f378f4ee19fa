"""The variants: the one GRPO pipeline instantiated under each of these namespaces, found in configuration.

A variant is a folder ``conf/<env>/<name>/`` whose parameters file (``parameters*.yml``, as Kedro reads it)
has a ``<name>:`` section; the folder may hold the variant's own ``catalog.yml`` beside it (its data source),
so one folder is one experiment. Nothing in the package lists them: the registry, ``compare_runs``, ``make
vllm-serve`` and the config loader all ask :func:`find_variants` (see docs/configuration.md, "Adding a variant").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from grpo_pipeline.errors import ProjectError

# The variant `kedro run` runs without --pipelines.
DEFAULT_VARIANT = "debug"
# The parameters every variant starts from, deep-merged under each variant's own (config/loader.py).
DEFAULTS_KEY = "variant_defaults"
# Folders of configuration that belong to the project's other pipelines, not to a variant.
OTHER_PIPELINES = ("compare_runs",)
PIPELINE_PREFIX = "grpo_"
# The MLflow tag naming the pipeline a run ran (its run name says more: what was overridden, how it ended).
PIPELINE_TAG = "grpo.pipeline"
# Stands for the variant's name in its parameters (e.g. in output paths), as in Kedro's dataset factories.
VARIANT_PLACEHOLDER = "{variant}"
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


class SharedFolderError(ProjectError, ValueError):
    """Two variants would write one folder, each overwriting the other's model or checkpoints."""


def written_folders(params: Mapping[str, Any]) -> dict[str, str]:
    """The folders a run of a variant writes, by the parameter naming each, from its parameters as the config
    loader hands them (defaults merged, ``{variant}`` filled in)."""
    model = params.get("model") or {}
    training = params.get("training") or {}
    warm_start = params.get("warm_start") or {}
    named = {
        "training.output_dir": training.get("output_dir"),
        "warm_start.output_dir": warm_start.get("output_dir"),
        # A model the pipeline builds (build_tiny, from_gguf) is written there; any other is only read.
        "model.name_or_path": model.get("name_or_path") if model.get("build_tiny") or model.get("from_gguf") else None,
    }
    return {key: folder for key, folder in named.items() if isinstance(folder, str) and folder}


def shared_folder_problem(variant: str, params_by_variant: Mapping[str, Mapping[str, Any]]) -> str | None:
    """What ``variant`` would write that another variant of ``params_by_variant`` writes too (the same folder, or
    one inside the other), naming both, or None."""
    clashes = []
    for key, folder in written_folders(params_by_variant[variant]).items():
        for other, other_params in params_by_variant.items():
            for other_key, other_folder in written_folders(other_params).items() if other != variant else ():
                if _overlap(Path(folder), Path(other_folder)):
                    clashes.append(f"{variant}.{key} = {folder} and {other}.{other_key} = {other_folder}")
    if not clashes:
        return None
    return (
        f"variant '{variant}' would write where another variant writes, each overwriting the other's outputs: "
        f"{'; '.join(clashes)}. Give every variant folders of its own: {VARIANT_PLACEHOLDER} in a path stands for "
        "the variant's name (e.g. data/06_models/{variant}/base_model), as the shipped variants write theirs"
    )


def _overlap(first: Path, second: Path) -> bool:
    first, second = Path(os.path.normpath(first)), Path(os.path.normpath(second))
    return first == second or first in second.parents or second in first.parents

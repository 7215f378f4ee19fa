"""A throwaway, runnable copy of the project, for tests and benchmarks that must not touch the
user's data folders or MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

PROJECT_FILES = ("pyproject.toml", ".telemetry")


def copy_project(source: Path, destination: Path) -> Path:
    """Copy configuration, shipped raw data and source into ``destination``; outputs start empty."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(source / name, destination / name)
    shutil.copytree(source / "conf" / "base", destination / "conf" / "base")
    shutil.copytree(source / "conf" / "gpu", destination / "conf" / "gpu")
    (destination / "conf" / "local").mkdir(parents=True)
    shutil.copytree(source / "data" / "01_raw", destination / "data" / "01_raw")
    shutil.copytree(source / "configs", destination / "configs")
    shutil.copytree(source / "notebooks", destination / "notebooks")
    shutil.copytree(source / "src", destination / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return destination


def params_option(variant: str, values: dict[str, Any]) -> str:
    """``--params=`` overriding ``values`` (dotted keys) under one variant's namespace."""
    return "--params=" + ",".join(f"{variant}.{key}={value}" for key, value in values.items())

"""A throwaway, runnable copy of the project, for tests and benchmarks that must not touch the
user's data folders or MLflow store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_FILES = ("pyproject.toml", ".telemetry", "conf/logging.yml", "logs/.gitkeep")


def copy_project(source: Path, destination: Path) -> Path:
    """Copy configuration, shipped raw data and source into ``destination``; outputs start empty."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, destination / name)
    # Every environment but `local`, which is the machine's own: the copy starts with an empty one.
    for environment in sorted((source / "conf").iterdir()):
        if environment.is_dir() and environment.name != "local":
            shutil.copytree(environment, destination / "conf" / environment.name)
    (destination / "conf" / "local").mkdir(parents=True)
    shutil.copytree(source / "data" / "01_raw", destination / "data" / "01_raw")
    shutil.copytree(source / "configs", destination / "configs")
    shutil.copytree(source / "notebooks", destination / "notebooks")
    shutil.copytree(source / "src", destination / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return destination


def params_option(variant: str, values: dict[str, Any]) -> str:
    """``--params=`` overriding ``values`` (dotted keys) under one variant's namespace."""
    return "--params=" + ",".join(f"{variant}.{key}={value}" for key, value in values.items())


def timed_run(command: list[str], cwd: Path) -> float:
    """Wall seconds of ``command`` run unattended in ``cwd``; exits with its output when it fails."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=env, check=False, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{' '.join(command)} in {cwd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed

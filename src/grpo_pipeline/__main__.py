"""``python -m grpo_pipeline`` runs the project like ``kedro run``; ``python -m grpo_pipeline import-recipe ...`` is
``kedro import-recipe ...``."""

from __future__ import annotations

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args: str, **kwargs: object) -> object:
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["import-recipe"]:
        from grpo_pipeline.cli import cli

        cli(prog_name="python -m grpo_pipeline")
    else:
        main()

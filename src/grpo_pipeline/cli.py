"""The project's ``kedro run``: Kedro's own command, with the project's errors shown as one message block.

An error the project raised for the user (:class:`grpo_pipeline.errors.ProjectError`: bad parameters or
data, a refused resume, a locked variant, a broken reward, a failed validation, ...) or a dataset error
is printed once, without a traceback, and the command exits with 1. The traceback still goes to the log
at DEBUG level (``kedro run -v`` or a file handler in ``conf/logging.yml``). Anything else keeps Kedro's
full traceback. Kedro loads ``cli.py``'s ``run`` in place of its own (kedro.framework.cli).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from grpo_pipeline.errors import ProjectError
from grpo_pipeline.interruption import RunInterrupted
from grpo_pipeline.pipelines.grpo import STAGES
from grpo_pipeline.variants import PIPELINE_PREFIX, unknown_variant

logger = logging.getLogger(__name__)


def _short_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_pipelines_exist(kwargs.get("pipelines"))
            return callback(*args, **kwargs)
        except RunInterrupted as interrupted:
            _end_open_runs_killed()
            click.secho(f"\nkedro run {interrupted}; run it again to resume.", err=True, fg="red")
            raise SystemExit(interrupted.exit_code) from None
        except (ProjectError, DatasetError) as error:
            logger.debug("kedro run failed", exc_info=True)
            click.secho(f"\nkedro run failed: {error}", err=True, fg="red")
            raise SystemExit(1) from None

    return run


class UnknownPipelineError(ProjectError, ValueError):
    """``--pipelines`` names a pipeline the project does not have."""


def _check_pipelines_exist(names: Sequence[str] | None) -> None:
    from kedro.framework.project import pipelines  # noqa: PLC0415 (the registry, once the project is configured)

    for name in names or ():
        if name not in pipelines:
            stages = ", ".join(f"_{stage}" for stage in STAGES)
            raise UnknownPipelineError(
                f"no pipeline '{name}'; {unknown_variant(name.removeprefix(PIPELINE_PREFIX))}. Each variant's "
                f"pipeline is grpo_<name>, with its stages as grpo_<name>{{{stages}}}; `kedro registry list` lists them"
            )


def _end_open_runs_killed() -> None:
    """An interruption outside the pipeline's run (while the hooks around it open or close the MLflow run, or print
    the summary) skips the error hooks and leaves the run open; MLflow's exit handler would end it FINISHED."""
    import mlflow  # noqa: PLC0415 (only an interrupted run needs it)

    while mlflow.active_run():
        mlflow.end_run("KILLED")


@click.group(name="grpo_pipeline")
def cli() -> None:
    """Project commands."""


cli.add_command(
    click.Command(
        name="run",
        params=kedro_run.params,
        callback=_short_errors(kedro_run.callback),
        help=kedro_run.help,
        short_help=kedro_run.short_help,
    )
)

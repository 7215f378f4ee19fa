"""The project's ``kedro run``: Kedro's own command, with the project's errors shown as one message block.

An error the project raised for the user (:class:`grpo_pipeline.errors.ProjectError`: bad parameters or
data, a refused resume, a locked variant, a broken reward, a failed validation, ...), a dataset error or
a tracking server that stopped answering is printed once, without a traceback, and the command exits with 1.
The traceback still goes to the log at DEBUG level (``kedro run -v`` or a file handler in ``conf/logging.yml``).
Anything else keeps Kedro's full traceback. Kedro loads ``cli.py``'s ``run`` in place of its own (kedro.framework.cli).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError
from kedro.utils import find_kedro_project

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.interruption import interruption_of
from grpo_pipeline.pipelines.grpo import STAGES
from grpo_pipeline.terminal import outlive_closed_output
from grpo_pipeline.tracking_store import lost_server
from grpo_pipeline.variants import (
    DEFAULTS_KEY,
    OTHER_PIPELINES,
    PIPELINE_PREFIX,
    conf_root,
    find_variants,
    unknown_variant,
)

logger = logging.getLogger(__name__)


def _short_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        _work_in_the_project_folder()
        with outlive_closed_output():
            try:
                _check_pipelines_exist(kwargs.get("pipelines"))
                return callback(*args, **kwargs)
            except Exception as error:
                if interrupted := interruption_of(error):
                    if lost_server() is None:
                        _end_open_runs_killed()
                    click.secho(f"\nkedro run {interrupted}. {interrupted.what_next}", err=True, fg="yellow")
                    raise SystemExit(interrupted.exit_code) from None
                # A lost tracking server is the cause to show, whatever failed for it (a node, kedro-mlflow's hook).
                lost = lost_server(error)
                if not isinstance(lost or error, ProjectError | DatasetError):
                    raise
                logger.debug("kedro run failed", exc_info=True)
                said = f"{lost}. {lost.what_next}" if lost else str(error)
                click.secho(f"\nkedro run failed: {said}", err=True, fg="red")
                raise SystemExit(1) from None

    return run


def _work_in_the_project_folder() -> None:
    """Run in the project's folder, as found from a subfolder (Kedro finds its project upwards): every relative path
    of the configuration (data/, the MLflow store sqlite:///mlflow.db, logs/, --params paths) is the project's,
    not a second copy under the folder the command was typed in."""
    from kedro.framework.project import LOGGING  # noqa: PLC0415 (configured when Kedro's CLI was imported)

    project = find_kedro_project(Path.cwd())
    if project is not None and project.resolve() != Path.cwd().resolve():
        os.chdir(project)
        LOGGING.__init__()  # Kedro's choice of logging configuration (conf/logging.yml), made again from here
        logger.info("Running in the project folder %s", project)


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


@cli.command("import-recipe")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="the experiment's (variant's) name: its folder and pipeline grpo_<name>")
@click.option("--env", default="base", show_default=True, help="the environment folder to write it in (conf/<env>/)")
@click.option("--tiny", is_flag=True, help="also write conf/tiny/<name>/: the recipe offline on the tiny model")
@click.option("--force", is_flag=True, help="replace the experiment's files if they exist")
def import_recipe(recipe: Path, name: str, env: str, tiny: bool, force: bool) -> None:
    """Turn a TRL CLI or open-r1 GRPO recipe (YAML) into an experiment folder conf/<env>/<name>/."""
    from grpo_pipeline import recipes  # noqa: PLC0415 (imports TRL to read its config classes)

    try:
        conf = conf_root()
        problem = _name_problem(name, env, conf)
        if problem and not force:
            raise recipes.RecipeError(problem)
        defaults = load_parameters(conf).get(DEFAULTS_KEY) or {}
        imported = recipes.import_recipe(recipes.read_recipe(recipe), name, defaults.get("training"))
        written = recipes.write_experiment(imported, conf, env, recipe, tiny, force)
    except ProjectError as error:
        click.secho(f"import-recipe failed: {error}", err=True, fg="red")
        raise SystemExit(1) from None
    click.echo(f"Read {recipe} ({imported.style} recipe); wrote {', '.join(map(str, written))}.")
    for key, reason in imported.not_carried.items():
        click.echo(f"  not carried over: {key}: {reason}")
    for note in imported.notes:
        click.echo(f"  note: {note}")
    for run_env, how in ((env, "Run it"), *((("tiny", "Offline on the tiny model"),) if tiny else ())):
        command = f"kedro run --pipelines={PIPELINE_PREFIX}{name}" + (f" --env={run_env}" if run_env != "base" else "")
        problem = recipes.check_experiment(conf, None if run_env in ("base", "local") else run_env, name)
        click.echo(f"{how}: {command}" + (f"\n  on this machine it would stop with: {problem}" if problem else ""))


def _name_problem(name: str, env: str, conf: Path) -> str | None:
    """Why ``name`` cannot name a new experiment in ``conf/<env>/``, or None."""
    if not name.isidentifier():
        return f"--name {name!r}: use letters, digits and underscores (it names a Kedro namespace and pipeline)"
    if name in (*OTHER_PIPELINES, DEFAULTS_KEY):
        return f"--name {name!r} is taken by the project's own configuration; choose another"
    folders = find_variants(conf).get(name)
    if folders and (conf / env / name) not in folders:
        where = ", ".join(str(folder.relative_to(conf.parent)) for folder in folders)
        return f"a variant '{name}' is already defined in {where}; choose another --name"
    return None

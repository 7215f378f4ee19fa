"""Comparing finished GRPO runs read back from MLflow (through its client, never by parsing the store's files)."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from grpo_pipeline.config.schema import CompareRunsParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.reporting import markdown_table
from grpo_pipeline.variants import PIPELINE_PREFIX, PIPELINE_TAG

logger = logging.getLogger(__name__)
# The pseudo-parameter holding each run's data sources in the comparison.
DATA_SOURCE = "data source"


def _read_artifact(client: MlflowClient, run_id: str, path: str, reader: Callable[[Path], Any]) -> Any:
    """``reader`` applied to a run's artifact, or None when the run has no such artifact."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = client.download_artifacts(run_id, path, scratch)
        except MlflowException:
            return None
        return reader(Path(local))


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _first_csv_row(path: Path) -> dict[str, Any]:
    return pd.read_csv(path).iloc[0].to_dict()


class ComparisonError(ProjectError, ValueError):
    """The runs to compare are not in the tracking store; the message says how to make or name them."""


def collect_runs(params: CompareRunsParams) -> list[dict[str, Any]]:
    """The chosen runs with their parameters, reward history, validation report and benchmark row."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.experiment_name)
    if experiment is None:
        raise ComparisonError(
            f"No MLflow experiment '{params.experiment_name}' at {mlflow.get_tracking_uri()}: run a GRPO pipeline "
            "first, e.g. `kedro run --pipelines=grpo_debug`."
        )
    if params.run_ids:
        runs = [client.get_run(run_id) for run_id in params.run_ids]
    else:
        runs = []
        for pipeline in params.pipelines:
            runs += _latest_finished(client, experiment.experiment_id, pipeline, params.latest_per_pipeline)
    if not runs:
        raise ComparisonError(
            f"No finished runs of {params.pipelines} in experiment '{params.experiment_name}'. Run a pipeline "
            "first or set compare_runs.run_ids."
        )
    collected = []
    for run in sorted(runs, key=lambda run: run.info.start_time):
        run_id = run.info.run_id
        history = client.get_metric_history(run_id, "reward")
        eval_history = client.get_metric_history(run_id, "eval/reward")
        collected.append(
            {
                "run_id": run_id,
                "run_name": run.info.run_name,
                "pipeline": run_pipeline(run),
                "label": f"{run.info.run_name} {run_id[:8]}",
                "start_time": run.info.start_time,
                "wall_time_s": (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
                "params": dict(run.data.params),
                "data_sources": data_sources(run),
                "reward_history": sorted((point.step, point.value) for point in history),
                "eval_reward_history": sorted((point.step, point.value) for point in eval_history),
                "validation": _read_artifact(client, run_id, "reports/validation_report.json", _json),
                "benchmark": _read_artifact(client, run_id, "reports/benchmark.csv", _first_csv_row),
            }
        )
    differences = _config_differences(collected)
    for run in collected:
        # Name each curve by what sets it apart most, e.g. "grpo_debug 2b9ac8c1 (reward.functions=['accuracy'])".
        distinct = ", ".join(
            f"{row['parameter']}={_shortened(row[run['label']])}"
            for _, row in differences.head(LABEL_PARAMETERS).iterrows()
        )
        run["label"] += f" ({distinct})" if distinct else ""
    logger.info("Comparing %d runs: %s", len(collected), "; ".join(run["label"] for run in collected))
    return collected


def data_sources(run: Any) -> list[dict[str, str]]:
    """The run's dataset inputs (lineage.py logs them): name, context and the project's tags (location, rows, hash)."""
    sources = []
    for dataset_input in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        sources.append(
            {"name": dataset_input.dataset.name, "context": tags.get("mlflow.data.context", "")}
            | {key.removeprefix("grpo."): value for key, value in tags.items() if key.startswith("grpo.")}
        )
    return sources


def _source_text(sources: list[dict[str, str]]) -> str:
    """``data/01_raw/task.parquet (1000 rows, fd604f14)``, one per table the run used."""
    return "; ".join(
        f"{source.get('location', source['name'])}{f'[{split}]' if (split := source.get('split')) else ''} "
        f"({source.get('rows', '?')} rows, {source.get('content_hash', '?')[:8]})"
        for source in sources
    )


# What most often sets runs apart, first: the labels of the curves show the first differing ones.
IMPORTANCE = ("reward.", "model.", "peft", DATA_SOURCE, "data.", "training.learning_rate", "warm_start", "training.")
LABEL_PARAMETERS = 3
MISSING = "(unset)"


def _importance(parameter: str) -> tuple[int, str]:
    rank = next((rank for rank, prefix in enumerate(IMPORTANCE) if parameter.startswith(prefix)), len(IMPORTANCE))
    return rank, parameter


def _shortened(value: str, width: int = 48) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def run_pipeline(run: Run) -> str:
    """The pipeline a run ran: its ``grpo.pipeline`` tag; a run from before runs had descriptive names is named
    after it."""
    return run.data.tags.get(PIPELINE_TAG) or run.info.run_name


def _latest_finished(client: MlflowClient, experiment_id: str, pipeline: str, count: int) -> list[Run]:
    """The ``count`` newest FINISHED runs of ``pipeline`` (found by their tag, or, from before the tag, by name)."""
    found: dict[str, Run] = {}
    for selector in (f"tags.`{PIPELINE_TAG}` = '{pipeline}'", f"attributes.run_name = '{pipeline}'"):
        for run in client.search_runs(
            [experiment_id],
            filter_string=f"{selector} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=count,
        ):
            found[run.info.run_id] = run
    return sorted(found.values(), key=lambda run: -run.info.start_time)[:count]


def _config_differences(compared_runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Parameters (and data sources) whose value is not the same in every run, the most telling first (rewards,
    model, data, learning rate, ...); keys are shown without the variant prefix."""

    def strip(key: str, variant: str) -> str:
        return key.removeprefix(f"{variant}.")

    tables = [
        {strip(key, run["pipeline"].removeprefix(PIPELINE_PREFIX)): value for key, value in run["params"].items()}
        | ({DATA_SOURCE: _source_text(run["data_sources"])} if run.get("data_sources") else {})
        for run in compared_runs
    ]
    keys = sorted(set().union(*tables), key=_importance)
    differing = [key for key in keys if len({table.get(key) for table in tables}) > 1]
    return pd.DataFrame(
        [
            {
                "parameter": key,
                **{run["label"]: table.get(key, MISSING) for run, table in zip(compared_runs, tables, strict=True)},
            }
            for key in differing
        ]
    )


def comparison_report(compared_runs: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """One row per run (outcome, speed, memory) and the parameters that differ between runs."""
    rows = []
    for run in compared_runs:
        validation, benchmark = run["validation"] or {}, run["benchmark"] or {}
        rows.append(
            {
                "run": run["label"],
                "data": _source_text(run["data_sources"]) or None,
                "final_reward": round(run["reward_history"][-1][1], 4) if run["reward_history"] else None,
                "final_eval_reward_during_training": (
                    round(run["eval_reward_history"][-1][1], 4) if run["eval_reward_history"] else None
                ),
                "eval_reward_base": round(validation["base"]["mean_reward"], 4) if validation else None,
                "eval_reward_trained": round(validation["trained"]["mean_reward"], 4) if validation else None,
                "wall_time_s": None if run["wall_time_s"] is None else round(run["wall_time_s"], 1),
                "s_per_step": benchmark.get("s_per_step"),
                "peak_rss_mb": benchmark.get("peak_rss_mb"),
                "peak_gpu_mb": benchmark.get("peak_gpu_mb"),
                "trainable_parameters": benchmark.get("trainable_parameters"),
            }
        )
    table = pd.DataFrame(rows)
    differences = _config_differences(compared_runs)
    markdown = "\n".join(
        [
            "# GRPO run comparison",
            "",
            markdown_table(table),
            "",
            "## Parameters that differ",
            "",
            markdown_table(differences) if not differences.empty else "_all parameters are identical_",
            "",
            "Reward curves: `comparison_reward_curves.png`.",
            "",
        ]
    )
    return table, markdown

"""`kedro run --pipelines=compare_runs` after two grpo_debug runs with different learning rates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from grpo_pipeline.variants import pipeline_name, variant_names
from tests.conftest import NO_GATES, copy_project, invoke_kedro, run_kedro

pytestmark = pytest.mark.kedro_run


def test_compares_two_debug_runs_with_different_learning_rates(debug_project: Path) -> None:
    project = debug_project
    for learning_rate in ("0.003", "0.001"):
        run_kedro(
            project,
            "run",
            "--pipelines=grpo_debug",
            f"--params=debug.training.learning_rate={learning_rate},debug.training.max_steps=20,{NO_GATES}",
        )
    run_kedro(project, "run", "--pipelines=compare_runs", "--params=compare_runs.latest_per_pipeline=2")
    reporting = project / "data/08_reporting/compare_runs"
    table = pd.read_csv(reporting / "comparison.csv")
    assert len(table) == 2
    assert table["run"].str.contains("training.learning_rate=0.003").sum() == 1
    assert table["run"].str.contains("training.learning_rate=0.001").sum() == 1
    assert table["eval_reward_trained"].notna().all() and table["s_per_step"].gt(0).all()
    report = (reporting / "comparison.md").read_text()
    assert "| training.learning_rate | 0.003 | 0.001 |" in report
    assert (reporting / "comparison_reward_curves.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grpo_pipeline")
    (comparison,) = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'compare_runs'")
    logged = {Path(item.path).name for item in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert logged == {"comparison.csv", "comparison.md", "comparison_reward_curves.png"}


def test_no_runs_to_compare_is_a_clear_error(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    result = invoke_kedro(project, "run", "--pipelines=compare_runs")
    assert result.returncode != 0
    # kedro-mlflow has created the experiment for the comparison run itself, so it is the runs that are missing.
    every_variant = [pipeline_name(variant) for variant in variant_names(project / "conf")]
    assert f"No finished runs of {every_variant}" in result.stdout + result.stderr

"""`kedro run --pipelines=compare_runs` after two grpo_debug runs with different learning rates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from grpo_pipeline.variants import pipeline_name, variant_names
from tests.conftest import NO_GATES, copy_project, invoke_kedro, mlflow_runs, run_kedro

pytestmark = pytest.mark.kedro_run


def test_compares_two_debug_runs_that_differ_in_their_rewards(debug_project: Path) -> None:
    project = debug_project
    short = f"--params=debug.training.max_steps=20,{NO_GATES}"
    run_kedro(project, "run", "--pipelines=grpo_debug", short)
    # A list is written in a parameters file: `--params` splits its value at commas.
    (project / "conf/local/parameters.yml").write_text("debug:\n  reward:\n    functions: [accuracy, format]\n")
    run_kedro(project, "run", "--pipelines=grpo_debug", short)
    run_kedro(project, "run", "--pipelines=compare_runs", "--params=compare_runs.latest_per_pipeline=2")
    reporting = project / "data/08_reporting/compare_runs"
    table = pd.read_csv(reporting / "comparison.csv")
    assert len(table) == 2
    # The curves are named by what sets the runs apart, the rewards first, whatever else differs.
    assert table["run"].str.endswith("(reward.functions=['accuracy'])").sum() == 1, table["run"]
    assert table["run"].str.endswith("(reward.functions=['accuracy', 'format'])").sum() == 1, table["run"]
    assert table["data"].str.match(r"data/01_raw/largest_digit_prompts.jsonl \(1000 rows, [0-9a-f]{8}\)").all()
    assert table["eval_reward_trained"].notna().all() and table["s_per_step"].gt(0).all()
    report = (reporting / "comparison.md").read_text()
    assert "| reward.functions | ['accuracy'] | ['accuracy', 'format'] |" in report
    assert "| data source |" not in report  # the same data: not a difference
    assert (reporting / "comparison_reward_curves.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (comparison,) = mlflow_runs(project, "compare_runs")
    logged = {Path(item.path).name for item in client.list_artifacts(comparison.info.run_id, "comparison")}
    assert logged == {"comparison.csv", "comparison.md", "comparison_reward_curves.png"}


def test_no_runs_to_compare_is_a_clear_error(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    result = invoke_kedro(project, "run", "--pipelines=compare_runs")
    assert result.returncode != 0
    # kedro-mlflow has created the experiment for the comparison run itself, so it is the runs that are missing.
    every_variant = [pipeline_name(variant) for variant in variant_names(project / "conf")]
    assert f"No finished runs of {every_variant}" in result.stdout + result.stderr

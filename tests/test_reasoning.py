"""The reasoning variant: GSM8K-shaped word problems with TRL's math_verify, think-format and overlong rewards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from grpo_pipeline.config.schema import VariantParams, parse_section
from tests.conftest import PROJECT_ROOT, copy_project, inside, mlflow_runs, run_kedro

WORD_PROBLEMS = PROJECT_ROOT / "data/01_raw/word_problems"


def test_the_shipped_word_problems_are_what_the_seeded_script_makes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "scripts/generate_word_problems.py", "--output", str(tmp_path)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"{split}.parquet"), pd.read_parquet(WORD_PROBLEMS / f"{split}.parquet")
        )
    train, test = (pd.read_parquet(WORD_PROBLEMS / f"{split}.parquet") for split in ("train", "test"))
    assert len(train) == 1000 and len(test) == 200 and not set(train["question"]) & set(test["question"])
    assert train["answer"].str.fullmatch(r"(?s).+\n#### \d+").all()
    assert train["reference_completion"].str.fullmatch(r"(?s)<think>\n.+\n</think>\n\\boxed\{\d+\}").all()


@pytest.mark.kedro_run
@pytest.mark.trainer
def test_grpo_reasoning_runs_offline_end_to_end_with_trl_reasoning_rewards(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    run_kedro(project, "run", "--pipelines=grpo_reasoning")
    report = json.loads((project / "data/08_reporting/reasoning/validation_report.json").read_text())
    assert report["global_step"] == 8 and report["eval_prompts"] == 32
    # Each reward under one name, in the report and in MLflow alike.
    names = ["accuracy_reward", "think_format_reward", "soft_overlong_punishment_reward"]
    assert list(report["trained"]["rewards"]) == names
    # The held-out prompts are the source's own test split; answers stay text through the JSON round trip.
    evaluation = pd.read_json(project / "data/03_primary/reasoning/eval_dataset.jsonl", lines=True, dtype=False)
    test = pd.read_parquet(WORD_PROBLEMS / "test.parquet")
    assert set(evaluation["prompt"].map(lambda messages: messages[-1]["content"])) <= set(test["question"])
    assert all(isinstance(solution, str) for solution in evaluation["solution"])
    (run,) = mlflow_runs(project, "grpo_reasoning")
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for reward in names:
        assert len(client.get_metric_history(run.info.run_id, f"rewards/{reward}/mean")) == 8, reward


def test_the_gpu_gsm8k_recipe_resolves_offline(tmp_path: Path) -> None:
    """conf/gpu's reasoning recipe: its catalog entry builds a huggingface.HFDataset on openai/gsm8k and its
    parameters validate, with no network (nothing is loaded)."""
    project = copy_project(tmp_path)
    with inside(project):
        bootstrap_project(project)
        with KedroSession.create(project_path=project, env="gpu") as session:
            context = session.load_context()
            dataset = context.catalog.get("reasoning.raw_prompts")
            # TRL refuses the gpu site's bf16 on a machine without one: the sections are parsed, not built.
            params = parse_section(VariantParams, context.params["reasoning"], "reasoning")
    resolved = {
        "type": type(dataset).__name__,
        "name": dataset.dataset_name,
        "model": params.model.name_or_path,
        "eval_split": params.data.eval_split,
    }
    assert resolved == {
        "type": "HFDataset",
        "name": "openai/gsm8k",
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "eval_split": "test",
    }

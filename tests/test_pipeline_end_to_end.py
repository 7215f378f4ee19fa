"""`kedro run --pipelines=grpo_debug` end to end, as a user types it, and what it leaves behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import mlflow.transformers
import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict
from mlflow.entities import Run as MlflowRun
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from grpo_pipeline import rewards as rewards_module
from grpo_pipeline.config import run_config as run_config_module
from grpo_pipeline.io import PromptJSONLinesDataset
from grpo_pipeline.pipeline_registry import register_pipelines
from grpo_pipeline.pipelines.grpo import STAGES
from grpo_pipeline.prompts import normalise_prompt
from grpo_pipeline.training.checkpoints import complete_checkpoints
from grpo_pipeline.training.run import PHASES
from tests.conftest import (
    NO_GATES,
    PROJECT_ROOT,
    copy_project,
    greedy_answers,
    inside,
    invoke_kedro,
    invoke_kedro_subprocess,
    mlflow_runs,
    run_kedro,
    run_kedro_subprocess,
)
from tests.reward_models import build_short_answer_reward_model

Run = tuple[Path, subprocess.CompletedProcess[str]]
NO_ACCURACY = f"debug.validation.accuracy_reward=null,{NO_GATES}"  # for rewards without accuracy


def test_debug_run_learns_and_prints_a_summary(debug_run: Run) -> None:
    project, result = debug_run
    assert "grpo-pipeline summary" in result.stdout
    assert re.search(r"Where the time went: .*debug\.train_grpo [\d.]+ s \(\d+%\)", result.stdout), result.stdout
    assert "eval reward base" in result.stdout and "MLflow run 'grpo_debug · validation PASSED'" in result.stdout
    assert "[debug] held-out greedy accuracy (accuracy): base" in result.stdout
    assert "[debug] held-out sampled accuracy (accuracy): base" in result.stdout
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["passed"] and report["status"] == "PASSED"
    assert "[debug] validation: PASSED (min_greedy_accuracy_gain 0.15, min_sampled_accuracy_gain 0.25)" in result.stdout
    # Correct on held-out problems, not just well formatted: accuracy is the only reward, and the warm-started
    # base already answers every prompt with a bare digit.
    assert report["accuracy_gain"]["greedy"] >= 0.15 and report["accuracy_gain"]["sampled"] >= 0.25, report
    assert report["base"]["rewards"] == {"accuracy": report["base"]["accuracy"]}
    assert report["base_model"] == "data/06_models/debug/warm_start"
    for model in ("base", "trained"):  # pass@8 and maj@8 over the 8 samples per prompt, beside mean accuracy
        sampled = report[model]["sampled"]
        assert sampled["maj_at_k"] <= sampled["pass_at_k"] and sampled["accuracy"] <= sampled["pass_at_k"], sampled
    assert report["trained"]["sampled"]["pass_at_k"] > report["base"]["sampled"]["pass_at_k"]
    assert "| pass@8 | maj@8 |" in (project / "data/08_reporting/debug/validation_report.md").read_text()
    assert "pass@8" in result.stdout and "maj@8" in result.stdout
    answers = {sample["trained_completion"] for sample in report["samples"]}
    assert len(answers) >= 4, report["samples"]  # different answers to different questions
    metrics = pd.read_csv(project / "data/07_model_output/debug/training_metrics.csv")
    assert len(metrics) >= 100
    first, last = metrics["reward"].head(20).mean(), metrics["reward"].tail(20).mean()
    assert last > first + 0.2, (first, last)
    held_out = metrics.dropna(subset=["eval/reward"]).set_index("step")["eval/reward"]  # evaluation during training
    assert list(held_out.index) == [0, 25, 50, 75, 100, 125, 150] and held_out[150] > held_out[0] + 0.2, held_out


def test_a_successful_run_is_quiet_and_its_log_file_has_the_rest(debug_run: Run) -> None:
    """A success shows the run's progress and summary; dependencies' noise goes to logs/grpo_pipeline.log only."""
    project, result = debug_run
    shown = result.stdout + result.stderr
    log = (project / "logs/grpo_pipeline.log").read_text()
    noise = {
        "the warm start's printed log dicts": "{'loss':",
        "MLflow's schema hint": "Inferred schema contains integer column",
        "MLflow's model card warning": "model card could not be",
        "MLflow's licence warning": "Unable to find license information",
        "MLflow's registration prints": "Successfully registered model",
        "kedro-viz's events file": "Pipeline run events written",
        "datasets' map bars": "Tokenizing train dataset",
        "the evaluation's nested bar": "\x1b[A",
        "a warning": "WARNING",
    }
    assert not {name for name, text in noise.items() if text in shown}, shown[-5000:]
    assert "Warm start: 20 steps on 800 solved examples" in log and "{'loss':" in log
    assert "model card could not be" in log and "Inferred schema contains" in log


def test_debug_run_writes_checkpoint_and_reports(debug_run: Run) -> None:
    project, _ = debug_run
    checkpoint = project / "data/06_models/debug/checkpoint"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "tokenizer_config.json").is_file()
    assert not list(checkpoint.parent.glob(".checkpoint.tmp-*")), "a staging directory was left behind"
    reporting = project / "data/08_reporting/debug"
    for name in (
        "validation_report.md",
        "benchmark.csv",
        "benchmark.md",
        "reward_curve.png",
        "prompt_length_stats.json",
    ):
        assert (reporting / name).stat().st_size > 0, name
    assert (reporting / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    benchmark = pd.read_csv(reporting / "benchmark.csv")
    assert benchmark.loc[0, "mode"] == "debug" and benchmark.loc[0, "steps"] >= 10


def test_mlflow_store_holds_the_run(debug_run: Run) -> None:
    project, _ = debug_run
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grpo_pipeline")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.`grpo.pipeline` = 'grpo_debug'")
    assert run.info.status == "FINISHED"
    # Readable in MLflow's run list: how the run ended, its validation status and headline figures, on its runs page.
    assert run.info.run_name == "grpo_debug · validation PASSED"
    assert run.data.tags["grpo.outcome"] == "validation PASSED" and run.data.tags["grpo.validation"] == "PASSED"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert run.data.metrics["validation/trained/greedy/accuracy"] == pytest.approx(report["trained"]["accuracy"])
    assert run.data.metrics["validation/greedy_accuracy_gain"] == pytest.approx(report["accuracy_gain"]["greedy"])
    assert len(client.get_metric_history(run.info.run_id, "reward")) >= 10
    assert len(client.get_metric_history(run.info.run_id, "rewards/accuracy/mean")) >= 10
    assert float(run.data.params["debug.training.learning_rate"]) > 0
    nodes = {key.removeprefix("node_seconds/") for key in run.data.metrics if key.startswith("node_seconds/")}
    assert {"debug.train_grpo", "debug.validate_checkpoint", "debug.resolve_base_model"} <= nodes, nodes
    assert run.data.params["debug.model.build_tiny.hidden_size"] == "128"
    artifacts = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "reports")}
    assert {"validation_report.json", "validation_report.md", "benchmark.csv", "reward_curve.png"} <= artifacts
    completions = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "completions")}
    assert completions == {"training_completions.json", "training_completions.html"}
    samples = json.loads((project / "data/08_reporting/debug/training_completions.json").read_text())
    assert [sample["step"] for sample in samples] == [step for step in (1, *range(10, 151, 10)) for _ in range(4)]
    assert "<table" in (project / "data/08_reporting/debug/training_completions.html").read_text()
    # Lineage: the data source as the run's dataset input, with its location, rows and content hash.
    (data,) = run.inputs.dataset_inputs
    tags = {tag.key: tag.value for tag in data.tags}
    assert data.dataset.name == "debug.raw_prompts" and tags["mlflow.data.context"] == "training"
    assert tags["grpo.location"] == "data/01_raw/largest_digit_prompts.jsonl" and tags["grpo.rows"] == "1000"
    assert tags["grpo.type"] == "grpo_pipeline.io.PromptJSONLinesDataset" and len(tags["grpo.content_hash"]) == 16


def test_the_validated_model_is_registered_and_generates_as_validated_when_loaded_by_its_alias(debug_run: Run) -> None:
    project, _ = debug_run
    record = json.loads((project / "data/08_reporting/debug/registered_model.json").read_text())
    assert record["registered"] and record["model_uri"] == "models:/debug@validated", record
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    eval_dataset = pd.read_json(project / "data/03_primary/debug/eval_dataset.jsonl", lines=True, dtype=False)
    with inside(project):
        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        version = MlflowClient().get_model_version_by_alias("debug", "validated")
        assert version.run_id == report["mlflow_run_id"] == record["mlflow_run_id"]
        assert float(version.tags["validation/greedy_accuracy_gain"]) == pytest.approx(
            report["accuracy_gain"]["greedy"]
        )
        assert "validation PASSED (min_greedy_accuracy_gain 0.15" in version.description
        model = mlflow.transformers.load_model("models:/debug@validated", return_type="components")
    # The registered model answers the held-out prompts as the validated checkpoint did (greedy).
    prompts = eval_dataset["prompt_text"].head(len(report["samples"])).tolist()
    answers = greedy_answers(model["model"], model["tokenizer"], prompts, report["max_new_tokens"])
    assert answers == [sample["trained_completion"] for sample in report["samples"]]


def test_all_variants_and_stages_are_registered() -> None:
    pipelines = register_pipelines()
    for variant in ("debug", "full", "lora"):
        nodes = {node.name for node in pipelines[f"grpo_{variant}"].nodes}
        assert f"{variant}.train_grpo" in nodes and f"{variant}.validate_checkpoint" in nodes
        assert all(pipelines[f"grpo_{variant}_{stage}"].nodes for stage in STAGES)
    assert pipelines["__default__"] is pipelines["grpo_debug"]


def break_rows_5_and_8(project: Path) -> None:
    raw = project / "data/01_raw/largest_digit_prompts.jsonl"
    lines = raw.read_text().splitlines()
    lines[4], lines[7] = '{"prompt": "What is 1 + 1?", "answer": ', '{"answer": "3"}'
    raw.write_text("\n".join(lines) + "\n")


@pytest.mark.subprocess
def test_bad_data_fails_before_anything_is_written_in_a_few_lines(tmp_path: Path) -> None:
    """Bad input run as a user types it, piped at 80 columns, with the project's conf/logging.yml: one short
    message block and nothing else (the resolved parameters, logged before the rows are read, go to the log
    file), and nothing written, not even a tracking store. Parameter errors: the in-process cases below."""
    project = copy_project(tmp_path)
    break_rows_5_and_8(project)
    result = invoke_kedro_subprocess(project, "run", "--pipelines=grpo_debug", columns=80)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    for part in (
        "kedro run failed: 2 problem(s) in ",
        "largest_digit_prompts.jsonl line 5: malformed JSON (Expecting value, column 39)",
        "largest_digit_prompts.jsonl line 8: the prompt is missing or empty",
    ):
        assert output.count(part) == 1, output
    assert len(output.splitlines()) <= 15, output
    assert "Traceback" not in output and "│" not in output and "Resolved parameters" not in output
    assert not (project / "data/02_intermediate").exists() and not (project / "mlflow.db").exists()
    assert "Resolved parameters of variant 'debug'" in (project / "logs/grpo_pipeline.log").read_text()


def test_every_variant_resolves_in_registry_and_kedro_viz(viz_build: Path) -> None:
    project = viz_build
    listed = run_kedro(project, "registry", "list").stdout
    assert all(f"grpo_{variant}" in listed for variant in ("debug", "full", "lora"))
    for variant in ("debug", "full", "lora"):
        graph = json.loads((project / "build/api/pipelines" / f"grpo_{variant}").read_text())
        names = {node["name"] for node in graph["nodes"]}
        assert {"train_grpo", "validate_checkpoint", "benchmark_run"} <= names, names


def test_a_failed_validation_writes_its_report_then_fails_the_run(
    debug_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = debug_project
    # This run also shows that a run parses its parameters once (one parse of the whole variant, every section in
    # it) and resolves its rewards once, though the hook and six nodes use them.
    parsed: list[str] = []
    resolved: list[object] = []
    parse, resolve = run_config_module.parse_section, rewards_module.resolve_rewards
    monkeypatch.setattr(run_config_module, "parse_section", lambda *args: parsed.append(args[2]) or parse(*args))
    monkeypatch.setattr(rewards_module, "resolve_rewards", lambda *args: resolved.append(args) or resolve(*args))
    # A version an earlier run validated, under the alias that says so.
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    client.create_registered_model("debug")
    earlier = client.create_model_version("debug", str(project / "data/06_models/debug/base_model"))
    client.set_registered_model_alias("debug", "validated", earlier.version)
    result = invoke_kedro(
        project,
        "run",
        "--pipelines=grpo_debug",
        f"--params=debug.training.max_steps=2,debug.validation.min_eval_reward=3.5,{NO_GATES}",
    )
    assert result.returncode != 0 and "validation.min_eval_reward=3.5" in result.stdout + result.stderr
    # The alias no longer says "validated" of the variant once its latest validation failed.
    registered = json.loads((project / "data/08_reporting/debug/registered_model.json").read_text())
    assert registered["registered"] is False and registered["alias_withdrawn_from_version"] == 1
    assert client.get_registered_model("debug").aliases == {}
    assert parsed == ["debug"] and len(resolved) == 1
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["passed"] is False and report["global_step"] == 2 and report["samples"]
    assert "FAILED" in (project / "data/08_reporting/debug/validation_report.md").read_text()
    (run,) = mlflow_runs(project, "grpo_debug")
    assert client.get_model_version("debug", "1").tags["grpo.alias_withdrawn_by_run"] == run.info.run_id
    assert run.info.run_name.startswith("grpo_debug · validation FAILED · training.max_steps=2 ")
    assert run.data.tags["grpo.validation"] == "FAILED"
    assert "validation_report.json" in {
        Path(item.path).name for item in client.list_artifacts(run.info.run_id, "reports")
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            f"debug.reward.functions=[formatt],debug.reward.weights=[1],{NO_ACCURACY}",
            "parameter 'debug.reward.functions[0]' (formatt): unknown reward function 'formatt'",
        ),
        # The misspelt reward is named first, not as validation.accuracy_reward missing from the rewards.
        (
            "debug.reward.functions=[acuracy]",
            "'debug.reward.functions[0]' (acuracy): unknown reward function 'acuracy'; did you mean 'accuracy'?",
        ),
        (
            "debug.training.output_dir=data/01_raw/largest_digit_prompts.jsonl/out",
            "Variant 'debug' cannot write its training output folder data/01_raw/largest_digit_prompts.jsonl/out "
            "(Not a directory",
        ),
        (
            "debug.reward.functions=[format],debug.reward.weights=[1]",
            "'debug.validation.accuracy_reward' = 'accuracy' is not one of the run's rewards ['format']; name one of",
        ),
        ("debug.training.num_generations=3", "generation_batch_size (32) must be divisible by num_generations (3)"),
        (
            f"debug.reward.functions=[my_rewards:brevity],debug.reward.weights=[1],{NO_ACCURACY}",
            "'my_rewards:brevity' cannot be",
        ),
        ("debug.model.build_tiny=null,debug.model.name_or_path=data/06_models/nope", "neither an existing local"),
        (
            "debug.reward.models=[{name_or_path: data/06_models/no_rm}]",
            "reward model 'data/06_models/no_rm' is neither",
        ),
    ],
)
@pytest.mark.kedro_run
def test_bad_input_stops_the_run_before_anything_is_written(tmp_path: Path, params: str, message: str) -> None:
    project = copy_project(tmp_path)
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug", f"--params={params}")
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.splitlines()) <= 15 and "Traceback" not in result.stderr
    assert not (project / "data/02_intermediate").exists() and not (project / "data/06_models").exists()
    assert not (project / "mlflow.db").exists(), "a refused run left a tracking store"


@pytest.mark.kedro_run
def test_a_tracking_store_that_is_not_a_database_is_named_and_left_alone(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    store = project / "mlflow.db"
    store.write_bytes(b"not a database\n" * 100)
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"kedro run failed: The MLflow tracking store {store} (server.mlflow_tracking_uri in conf/<env>/mlflow.yml) "
        "is not an SQLite database; it was left as it is. Move it aside to start a new store (`mv mlflow.db "
        "mlflow.db.broken`), or point server.mlflow_tracking_uri in conf/<env>/mlflow.yml at another file."
    ]
    assert store.read_bytes() == b"not a database\n" * 100
    assert not (project / "data/02_intermediate").exists()


@pytest.mark.kedro_run
def test_bad_rows_stop_the_run_before_anything_is_written(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    raw = project / "data/01_raw/largest_digit_prompts.jsonl"
    lines = raw.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "What is 1 + 1?", "answer": "two"})
    lines[9] = json.dumps({"answer": "3"})
    raw.write_text("\n".join(lines) + "\n")
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug")
    assert result.returncode != 0
    assert (
        "2 problem(s) in " in result.stderr
        and "data/01_raw/largest_digit_prompts.jsonl; fix or remove" in result.stderr
    )
    assert "largest_digit_prompts.jsonl line 3: 'answer' 'two' is not an integer" in result.stderr
    assert "largest_digit_prompts.jsonl line 10: the prompt is missing or empty" in result.stderr
    assert not (project / "data/02_intermediate").exists() and not mlflow_runs(project)


@pytest.mark.kedro_run
def test_bad_rows_of_a_csv_source_name_its_path_and_rows(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    rows = pd.read_json(project / "data/01_raw/largest_digit_prompts.jsonl", lines=True, dtype=False).head(200)
    rows.loc[4, "answer"] = "five"
    rows.to_csv(project / "data/01_raw/prompts.csv", index=False)
    (project / "conf/local/catalog.yml").write_text(
        "debug.raw_prompts:\n  type: pandas.CSVDataset\n  filepath: data/01_raw/prompts.csv\n"
    )
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug")
    assert result.returncode != 0
    assert "data/01_raw/prompts.csv (debug.raw_prompts) row 5: 'answer' 'five' is not an integer" in result.stderr
    assert not (project / "data/02_intermediate").exists() and not mlflow_runs(project)


def test_a_run_of_chosen_nodes_gets_the_resolved_run_config_from_the_pre_run_checks(debug_project: Path) -> None:
    # The node that resolves it is not among them; the hook that checked the parameters hands its result over.
    run_kedro(debug_project, "run", "--pipelines=grpo_debug", "--nodes=debug.resolve_base_model")
    (run,) = mlflow_runs(debug_project, "grpo_debug")
    assert run.info.status == "FINISHED"


def test_rewards_by_import_path_trl_built_ins_and_a_reward_model_reach_mlflow_and_the_report(
    debug_project: Path,
) -> None:
    """Every kind of reward TRL takes, each under one name everywhere: a user's sync and async (LLM-judge shaped)
    rewards, one that returns None (not applicable) for problems with an even answer, TRL's own, a reward model."""
    project = debug_project
    # A user's own module beside the package: Kedro puts src/ on the path.
    (project / "src/my_rewards.py").write_text(
        "import asyncio\n\n\n"
        "def brevity(completions, max_chars=4, **kwargs):\n"
        "    return [1.0 if len(c[-1]['content'].strip()) <= max_chars else 0.0 for c in completions]\n\n\n"
        "async def judge(completions, answer, trainer_state, **kwargs):\n"
        "    await asyncio.sleep(0)\n"
        "    assert trainer_state is not None  # TRL passes it, and so does validation\n"
        "    return [float(c[-1]['content'].strip() == a) for c, a in zip(completions, answer)]\n\n\n"
        "def odd_only(completions, answer, **kwargs):\n"
        "    return [None if int(a) % 2 == 0 else float(c[-1]['content'].strip() == a)\n"
        "            for c, a in zip(completions, answer)]\n"
    )
    build_short_answer_reward_model(project / "data/06_models/reward/short_answer")
    (project / "conf/local/parameters.yml").write_text(
        "debug:\n"
        "  reward:\n"
        "    functions:\n"
        "      - accuracy\n"
        "      - {function: 'my_rewards:brevity', kwargs: {max_chars: 3}}\n"
        "      - {function: get_soft_overlong_punishment, kwargs: {max_completion_len: 8, soft_punish_cache: 4}}\n"
        "      - 'my_rewards:judge'\n"
        "      - 'my_rewards:odd_only'\n"
        "    weights: [1.0, 1.0, 1.0, 1.0, 1.0]\n"
        "    models:\n"
        "      - {name_or_path: data/06_models/reward/short_answer, weight: 2.0}\n"
        "  validation: {min_greedy_accuracy_gain: null, min_sampled_accuracy_gain: null}\n"
    )
    run_kedro(project, "run", "--pipelines=grpo_debug", "--params=debug.training.max_steps=4")
    (run,) = mlflow_runs(project, "grpo_debug")
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    names = ["accuracy", "brevity", "soft_overlong_punishment_reward", "judge", "odd_only", "short_answer"]
    for name in names:
        logged = client.get_metric_history(run.info.run_id, f"rewards/{name}/mean")
        # A step whose completions the reward never applied to has no mean (TRL's is NaN) and no point.
        assert 1 <= len(logged) <= 4 if name == "odd_only" else len(logged) == 4, name
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert list(report["trained"]["rewards"]) == list(report["reward_weights"]) == names  # one name everywhere
    assert report["reward_weights"]["short_answer"] == 2.0
    eval_answers = pd.read_json(project / "data/03_primary/debug/eval_dataset.jsonl", lines=True, dtype=False)["answer"]
    evens = sum(int(answer) % 2 == 0 for answer in eval_answers.head(report["eval_prompts"]))
    assert 0 < evens < report["eval_prompts"]
    for model in ("base", "trained"):
        skipped = report[model]["skipped"]
        assert skipped == dict.fromkeys(names, 0) | {"odd_only": evens}, skipped
        assert report[model]["sampled"]["skipped"]["odd_only"] == evens * report["sampling"]["completions_per_prompt"]
    markdown = (project / "data/08_reporting/debug/validation_report.md").read_text()
    assert "short_answer" in markdown and "odd_only skipped" in markdown


def shipped_task_as_table() -> pd.DataFrame:
    """The shipped JSON Lines task with every prompt as chat messages, as a Parquet or Hugging Face copy holds it."""
    raw = PromptJSONLinesDataset(filepath=str(PROJECT_ROOT / "data/01_raw/largest_digit_prompts.jsonl")).load()
    return pd.DataFrame({"prompt": raw["prompt"].map(normalise_prompt), "answer": raw["answer"].astype(str)})


def prepared_eval_prompts(project: Path, catalog_entry: str | None) -> list[str]:
    if catalog_entry:
        (project / "conf/local/catalog.yml").write_text(catalog_entry)
    run_kedro(project, "run", "--pipelines=grpo_debug_prepare")
    return (project / "data/02_intermediate/debug/eval_prompts.jsonl").read_text().splitlines()


def test_parquet_and_save_to_disk_copies_give_the_same_eval_prompts_as_json_lines(
    tmp_path: Path, debug_run: Run
) -> None:
    table = shipped_task_as_table()
    parquet, on_disk = copy_project(tmp_path / "parquet", models_from=debug_run[0]), copy_project(tmp_path / "disk")
    table.to_parquet(parquet / "data/01_raw/task.parquet")
    Dataset.from_pandas(table, preserve_index=False).save_to_disk(str(on_disk / "data/01_raw/task_hf"))
    expected = prepared_eval_prompts(copy_project(tmp_path / "jsonl"), None)
    parquet_entry = "debug.raw_prompts:\n  type: pandas.ParquetDataset\n  filepath: data/01_raw/task.parquet\n"
    assert prepared_eval_prompts(parquet, parquet_entry) == expected
    disk_entry = "debug.raw_prompts:\n  type: grpo_pipeline.io.HFDiskDataset\n  path: data/01_raw/task_hf\n"
    assert prepared_eval_prompts(on_disk, disk_entry) == expected
    # Those two runs were of the prepare stage only; the parquet copy trains below as a new experiment.


def test_a_run_from_a_project_subfolder_writes_only_the_projects_own_folders(debug_project: Path) -> None:
    """`kedro run` typed in notebooks/ (Kedro finds the project upwards) wrote a second mlflow.db and data/ there."""
    project = debug_project
    subfolder = project / "notebooks"
    before = sorted(path.name for path in subfolder.iterdir())
    run_kedro_subprocess(subfolder, "run", "--pipelines=grpo_debug_prepare")  # a new process: its working folder
    assert sorted(path.name for path in subfolder.iterdir()) == before
    (run,) = mlflow_runs(project, "grpo_debug_prepare")
    assert run.info.status == "FINISHED" and (project / "data/03_primary/debug").is_dir()
    assert "Running in the project folder" in (project / "logs/grpo_pipeline.log").read_text()


def test_a_new_experiment_is_a_folder_with_its_own_data_and_no_package_edit(tmp_path: Path, debug_run: Run) -> None:
    project = copy_project(tmp_path / "project", models_from=debug_run[0])
    # As a user does it: copy the debug variant's folder, rename its top key, point its own catalog at a Parquet file.
    shutil.copytree(project / "conf/base/debug", project / "conf/local/mytask")
    parameters = project / "conf/local/mytask/parameters.yml"
    parameters.write_text(parameters.read_text().replace("\ndebug:\n", "\nmytask:\n"))
    shipped_task_as_table().rename(columns={"prompt": "question"}).to_parquet(project / "data/01_raw/mytask.parquet")
    (project / "conf/local/mytask/catalog.yml").write_text(
        "mytask.raw_prompts:\n  type: pandas.ParquetDataset\n  filepath: data/01_raw/mytask.parquet\n"
    )
    source = {path: path.read_bytes() for path in (project / "src").rglob("*.py")}
    debug_model = {path: path.stat().st_mtime_ns for path in (project / "data/06_models/debug").rglob("*")}
    assert "- grpo_mytask\n" in run_kedro(project, "registry", "list").stdout
    no_gates = NO_GATES.replace("debug.", "mytask.")
    result = run_kedro(
        project,
        "run",
        "--pipelines=grpo_mytask",
        f"--params=mytask.training.max_steps=4,mytask.data.columns.question=prompt,{no_gates}",
    )
    assert {path: path.read_bytes() for path in (project / "src").rglob("*.py")} == source
    # Its model, warm start and checkpoints are its own: debug's are untouched.
    assert {path.name for path in (project / "data/06_models/mytask").iterdir()} >= {"base_model", "warm_start"}
    assert {path: path.stat().st_mtime_ns for path in (project / "data/06_models/debug").rglob("*")} == debug_model
    report = json.loads((project / "data/08_reporting/mytask/validation_report.json").read_text())
    assert report["global_step"] == 4 and report["eval_prompts"] == 200
    # No gate set: nothing was checked, and every record says so instead of PASSED.
    assert report["status"] == "NO GATE" and report["passed"] is None and not report["failures"]
    markdown = (project / "data/08_reporting/mytask/validation_report.md").read_text()
    assert "- status: **no gate set: nothing checked**" in markdown and "PASSED" not in markdown
    assert "[mytask] validation: no gate set: nothing checked" in result.stdout
    registered = json.loads((project / "data/08_reporting/mytask/registered_model.json").read_text())
    assert registered["registered"] is False and "no validation gate was set" in registered["reason"]
    (run,) = mlflow_runs(project, "grpo_mytask")
    (data,) = run.inputs.dataset_inputs
    tags = {tag.key: tag.value for tag in data.tags}
    assert tags["grpo.location"] == "data/01_raw/mytask.parquet" and tags["grpo.type"] == "pandas.ParquetDataset"
    assert tags["grpo.rows"] == "1000"
    # A variant that would build its model in debug's folder (the copied folder's path before it said {variant})
    # is refused before work, naming both.
    shutil.copytree(project / "conf/local/mytask", project / "conf/local/clash")
    (project / "conf/local/clash/catalog.yml").unlink()  # its data: the shipped catalog's
    clash = project / "conf/local/clash/parameters.yml"
    clash.write_text(
        clash.read_text()
        .replace("\nmytask:\n", "\nclash:\n")
        .replace("data/06_models/{variant}/base_model", "data/06_models/debug/base_model")
    )
    refused = invoke_kedro(project, "run", "--pipelines=grpo_clash")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        "variant 'clash' would write where another variant writes, each overwriting the other's outputs: "
        "clash.model.name_or_path = data/06_models/debug/base_model and debug.model.name_or_path = "
        "data/06_models/debug/base_model." in refused.stderr
    ), refused.stderr
    assert not (project / "data/06_models/clash").exists() and not mlflow_runs(project, "grpo_clash")
    shutil.rmtree(project / "conf/local/clash")
    # An unknown experiment gets one message naming the variants and where they are defined.
    unknown = invoke_kedro(project, "run", "--pipelines=grpo_mytsak")
    assert unknown.returncode == 1 and "grpo_mytask (conf/local/mytask)" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


@pytest.mark.kedro_run
def test_a_save_to_disk_copy_with_splits_gives_its_test_split_as_the_eval_set(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    table = shipped_task_as_table()
    train, test = table.iloc[100:], table.iloc[:100]
    DatasetDict(
        {"train": Dataset.from_pandas(train, preserve_index=False), "test": Dataset.from_pandas(test)}
    ).save_to_disk(str(project / "data/01_raw/task_hf"))
    (project / "conf/local/catalog.yml").write_text(
        "debug.raw_prompts:\n  type: grpo_pipeline.io.HFDiskDataset\n  path: data/01_raw/task_hf\n"
    )
    run_kedro(
        project, "run", "--pipelines=grpo_debug_prepare", "--params=debug.data.eval_split=test,debug.data.eval_size=64"
    )
    prepared = {
        split: pd.read_json(project / f"data/02_intermediate/debug/{split}_prompts.jsonl", lines=True, dtype=False)
        for split in ("train", "eval")
    }
    texts = {
        split: set(frame["prompt"].map(lambda messages: messages[-1]["content"])) for split, frame in prepared.items()
    }
    assert len(prepared["eval"]) == 64 and texts["eval"] <= set(test["prompt"].map(lambda m: m[-1]["content"]))
    assert not texts["train"] & texts["eval"]
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug_prepare", "--params=debug.data.eval_split=dev")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        "data/01_raw/task_hf (debug.raw_prompts) holds the splits ['test', 'train'], not 'dev'; set data.eval_split"
        in result.stderr
    ), result.stderr[-2000:]


@pytest.mark.kedro_run
@pytest.mark.trainer
def test_a_csv_with_its_own_column_names_a_template_and_a_system_prompt_trains(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    table = shipped_task_as_table()
    pd.DataFrame(
        {"question": table["prompt"].map(lambda messages: messages[-1]["content"]), "result": table["answer"]}
    ).to_csv(project / "data/01_raw/task.csv", index=False)
    (project / "conf/local/catalog.yml").write_text(
        "debug.raw_prompts:\n  type: pandas.CSVDataset\n  filepath: data/01_raw/task.csv\n"
    )
    (project / "conf/local/parameters.yml").write_text(
        "debug:\n"
        "  data:\n"
        "    columns: {result: answer}\n"
        "    prompt_template: '{question} Answer with a number.'\n"
        "    system_prompt: Be brief.\n"
        "  formatting: {max_prompt_length: 128}\n"
        "  training: {max_steps: 4}\n"
        "  validation: {min_greedy_accuracy_gain: null, min_sampled_accuracy_gain: null}\n"
    )
    run_kedro(project, "run", "--pipelines=grpo_debug")
    train = pd.read_json(project / "data/03_primary/debug/train_dataset.jsonl", lines=True, dtype=False)
    system, user = train.loc[0, "prompt"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["role"] == "user" and user["content"].endswith(" Answer with a number.")
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["global_step"] == 4 and report["eval_prompts"] == 200


def debug_run_with(project: Path, params: str) -> tuple[MlflowRun, MlflowClient]:
    """``kedro run --pipelines=grpo_debug --params=PARAMS`` (no validation gate) and its MLflow run."""
    run_kedro(project, "run", "--pipelines=grpo_debug", f"--params={params},{NO_GATES}")
    (run,) = mlflow_runs(project, "grpo_debug")
    return run, MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_grpo_config_fields_the_project_never_names_and_a_second_tracker_reach_the_trainer(
    debug_project: Path, tmp_path: Path
) -> None:
    project = debug_project
    run, client = debug_run_with(
        project,
        "debug.training.max_steps=3,debug.training.epsilon_high=0.28,debug.training.top_entropy_quantile=0.8,"
        "debug.training.report_to=[tensorboard]",
    )
    config = json.loads(Path(client.download_artifacts(run.info.run_id, "grpo_config.json", str(tmp_path))).read_text())
    assert (config["epsilon_high"], config["top_entropy_quantile"]) == (0.28, 0.8)
    assert (config["loss_type"], config["scale_rewards"], config["report_to"]) == ("dapo", "group", ["tensorboard"])
    assert list((project / "data/06_models/debug/trainer_output").rglob("events.out.tfevents.*")), "no TensorBoard"
    assert len(client.get_metric_history(run.info.run_id, "reward")) == 3  # MLflow still gets every step


def test_evaluation_during_training_reaches_mlflow_the_metrics_and_the_reward_curve(debug_project: Path) -> None:
    project = debug_project
    run, client = debug_run_with(
        project,
        "debug.training.max_steps=40,debug.training.eval_strategy=steps,debug.training.eval_steps=10,"
        "debug.training.eval_on_start=true",
    )
    history = client.get_metric_history(run.info.run_id, "eval/reward")
    assert sorted(point.step for point in history) == [0, 10, 20, 30, 40]
    assert len(client.get_metric_history(run.info.run_id, "eval/rewards/accuracy/mean")) == 5
    metrics = pd.read_csv(project / "data/07_model_output/debug/training_metrics.csv")
    assert metrics["eval/reward"].notna().sum() == 5 and metrics["reward"].notna().sum() == 40
    assert (project / "data/08_reporting/debug/reward_curve.png").stat().st_size > 10_000
    # The training's wall time by phase: evaluation measured apart from the training batches' generation.
    benchmark = pd.read_csv(project / "data/08_reporting/debug/benchmark.csv").iloc[0]
    shares = {phase: benchmark[f"{phase}_share"] for phase in PHASES}
    assert all(0 <= share <= 1 for share in shares.values()) and sum(shares.values()) == pytest.approx(1, abs=0.003)
    assert shares["evaluation"] > 0.05 and shares["generation"] > 0.05, shares


def test_sigterm_stops_after_a_checkpoint_and_the_rerun_ends_as_an_uninterrupted_run(
    debug_run: Run, debug_project: Path
) -> None:
    """A scheduler's SIGTERM mid-run (sent here by this process to itself, as it would be to `kedro run`): training
    finishes its step, saves a complete checkpoint, the run is recorded KILLED with the step and the variant's
    report says so; the rerun resumes there and ends with the weights of the shared uninterrupted run."""
    output_dir = debug_project / "data/06_models/debug/trainer_output"

    def send_sigterm_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while not complete_checkpoints(output_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_sigterm_after_first_checkpoint, daemon=True)
    sender.start()
    stopped = invoke_kedro(debug_project, "run", "--pipelines=grpo_debug")
    sender.join()
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 128 + signal.SIGTERM, output
    (interrupted,) = mlflow_runs(debug_project, "grpo_debug")
    step = int(interrupted.data.tags["grpo.interrupted_at_step"])
    assert 50 <= step < 150 and interrupted.info.status == "KILLED"
    assert (
        f"kedro run interrupted by SIGTERM at training step {step} of 150. Run the same command again: debug resumes "
        f"training from data/06_models/debug/trainer_output/checkpoint-{step}." in output
    )
    # No step lost: the checkpoint of the step it stopped at is complete.
    assert complete_checkpoints(output_dir)[-1].name == f"checkpoint-{step}"
    report = json.loads((debug_project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["status"] == "KILLED" and not report["passed"] and report["failed_node"] == "debug.train_grpo"
    assert report["mlflow_run_id"] == interrupted.info.run_id

    resumed = run_kedro(debug_project, "run", "--pipelines=grpo_debug")
    assert f"Resuming training from {output_dir.relative_to(debug_project)}/checkpoint-{step}" in " ".join(
        (resumed.stdout + resumed.stderr).split()
    )
    _, finished = mlflow_runs(debug_project, "grpo_debug")
    assert finished.info.status == "FINISHED" and finished.data.tags["grpo.resumed_from_step"] == str(step)
    report = json.loads((debug_project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["passed"] and report["global_step"] == 150
    assert report["mlflow_run_id"] == report["checkpoint_mlflow_run_id"] == finished.info.run_id
    weights = load_file(debug_project / "data/06_models/debug/checkpoint/model.safetensors")
    uninterrupted = load_file(debug_run[0] / "data/06_models/debug/checkpoint/model.safetensors")
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[name], uninterrupted[name]) for name in weights)


def test_a_run_that_fails_in_training_replaces_the_previous_passed_report(debug_run: Run, debug_project: Path) -> None:
    project = debug_project
    for previous in ("data/08_reporting/debug", "data/06_models/debug/checkpoint"):
        shutil.copytree(debug_run[0] / previous, project / previous)
    old_run_id = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())["mlflow_run_id"]
    assert old_run_id

    result = invoke_kedro(
        project,
        "run",
        "--pipelines=grpo_debug",
        "--params=debug.training.max_steps=6,debug.reward.functions=[tests.reward_examples:nan_from_step_three],"
        + NO_ACCURACY,
    )
    assert result.returncode == 1 and "returned nan" in result.stdout + result.stderr
    (failed,) = mlflow_runs(project, "grpo_debug")
    assert failed.info.status == "FAILED" and failed.data.tags["grpo.failed_node"] == "debug.train_grpo"
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["passed"] is False and report["status"] == "FAILED"
    assert report["mlflow_run_id"] == failed.info.run_id and report["failed_node"] == "debug.train_grpo"
    assert "returned nan" in report["error"]
    # The checkpoint on disk is the earlier run's, and the report says whose.
    assert report["checkpoint"]["mlflow_run_id"] == old_run_id and report["checkpoint"]["global_step"] == 150
    markdown = (project / "data/08_reporting/debug/validation_report.md").read_text()
    assert "**FAILED**" in markdown and old_run_id in markdown and "PASSED" not in markdown
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert "validation_report.json" in {
        Path(item.path).name for item in client.list_artifacts(failed.info.run_id, "reports")
    }

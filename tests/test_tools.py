"""Tools and environments (``run.tools``, ``run.environment``): checked before anything runs, passed to
GRPOTrainer as TRL takes them, and used by validation as training uses them; pass@k and maj@k."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from grpo_pipeline.config.run_config import resolve_run_config
from grpo_pipeline.config.schema import FormattingParams, TinyModelParams
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.io.checkpoint_dataset import HFCheckpointDataset
from grpo_pipeline.models.loading import load_tokenizer
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.pipelines.grpo.nodes import train_grpo, validate_checkpoint
from grpo_pipeline.prompts import format_splits
from grpo_pipeline.sandbox import params_option
from grpo_pipeline.validation import at_k, final_answer
from tests.conftest import PROJECT_ROOT, copy_project, invoke_kedro, mlflow_runs, run_kedro

EXAMPLES = "tests.tool_examples"


def params(run: dict[str, Any], reward: dict[str, Any] | None = None, **validation: Any) -> dict[str, Any]:
    return {
        "seed": 0,
        "model": {"name_or_path": "x"},
        "formatting": {"max_prompt_length": 960},
        "reward": reward or {"functions": []},
        "training": {
            "learning_rate": 3e-3,
            "max_steps": 2,
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 24,
            "max_tool_calling_iterations": 2,
            "use_cpu": True,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
        },
        "run": run,
        "validation": {"max_prompts": 4, "max_new_tokens": 24, "sampled_completions": 2, **validation},
        "benchmark": {"mode": "tools"},
    }


def test_bad_tools_and_an_environment_without_reset_are_each_named_before_anything_runs() -> None:
    run = {
        "tools": [f"{EXAMPLES}:untyped", f"{EXAMPLES}:undocumented", "tests.no_such_module:add", f"{EXAMPLES}:add"],
        "environment": f"{EXAMPLES}:NoReset",
    }
    with pytest.raises(ParameterError) as error:
        resolve_run_config(params(run), "debug")
    problems = error.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith(f"parameter 'debug.run.tools[0]' = '{EXAMPLES}:untyped': Argument a is missing")
    assert "'debug.run.tools[1]'" in problems[1] and "has no docstring" in problems[1]
    assert "'debug.run.tools[2]'" in problems[2] and "cannot be imported" in problems[2]
    assert "'debug.run.environment'" in problems[3] and "NoReset has no reset method" in problems[3]


def test_an_environment_that_owns_the_reward_is_one_more_reward_named_after_its_class() -> None:
    config = resolve_run_config(
        params({"tools": [f"{EXAMPLES}:slow_add"], "environment": f"{EXAMPLES}:Counter"}, {"functions": ["format"]}),
        "debug",
    )
    assert config.rewards.names == ["format", "Counter"] and config.rewards.weights == [1.0, 1.0]
    # TRL adds the environment's reward itself: the trainer gets the other rewards and their weights only.
    assert len(config.rewards.functions) == 1 and config.grpo_config.reward_weights == [1.0]
    assert config.tools.trainer_kwargs()["environment_factory"].__name__ == "Counter"


def test_a_run_needs_a_reward_function_a_reward_model_or_an_environment_that_scores() -> None:
    with pytest.raises(ParameterError, match=r"no reward; give one under functions or models, or an environment"):
        resolve_run_config(params({"environment": f"{EXAMPLES}:NoReward"}), "debug")


def test_a_trl_reward_that_reads_the_first_message_only_is_warned_of_with_tools(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reward = {"functions": ["accuracy_reward", "accuracy"]}
    resolve_run_config(params({"tools": [f"{EXAMPLES}:add"]}, reward), "debug")
    warned = [record.getMessage() for record in caplog.records if record.name == "grpo_pipeline.rewards"]
    assert len(warned) == 1 and "TRL's accuracy_reward scores a completion's first message" in warned[0], warned
    caplog.clear()
    resolve_run_config(params({}, reward), "debug")  # without tools its first message is its answer
    assert not [record for record in caplog.records if record.name == "grpo_pipeline.rewards"]


def test_several_environments_need_the_environment_column() -> None:
    with pytest.raises(ParameterError, match=r"add 'environment' to data.required_columns"):
        resolve_run_config(params({"environment": {"count": f"{EXAMPLES}:Counter"}}), "debug")


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyModelParams(max_position_embeddings=1024, chat_template="lfm2_v2", number_tokens=True)
    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tools", spec)


@pytest.mark.trainer
def test_a_stateful_environment_from_a_user_module_trains_and_validates_with_its_reward_under_one_name(
    tool_model_dir: Path, tmp_path: Path
) -> None:
    run = {"environment": f"{EXAMPLES}:Counter", "tools": [f"{EXAMPLES}:slow_add"]}  # an async tool beside it
    config = resolve_run_config(params(run, accuracy_reward="Counter"), "debug")
    config = config.replace_training(output_dir=str(tmp_path / "trainer"))
    raw = pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"Count to {n}."}] for n in range(12)],
            "answer": list(map(str, range(12))),
        }
    )
    train, held_out, _ = format_splits(
        raw.iloc[4:],
        raw.iloc[:4],
        load_tokenizer(tool_model_dir),
        FormattingParams(max_prompt_length=960),
        config.tools,
    )
    # The environment's tool and the async one are described in every prompt, as the trainer renders it.
    assert "increment" in train["prompt_text"][0] and "slow_add" in train["prompt_text"][0]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("tools")
    with mlflow.start_run() as active:
        checkpoint, metrics, _, samples = train_grpo(train, held_out, str(tool_model_dir), config)
        HFCheckpointDataset(path=str(tmp_path / "checkpoint")).save(checkpoint)
        report, markdown = validate_checkpoint(
            HFCheckpointDataset(path=str(tmp_path / "checkpoint")).load(), str(tool_model_dir), held_out, config
        )
    history = MlflowClient().get_metric_history(active.info.run_id, "rewards/Counter/mean")
    assert [metric.step for metric in history] == [1, 2]
    assert {"rewards/Counter/mean", "tools/call_frequency", "tools/use_share", "tools/turns"} <= set(metrics)
    assert all("Counter" in sample for sample in samples)
    for model in ("base", "trained"):
        assert set(report[model]["rewards"]) == {"Counter"}
        assert set(report[model]["tool_use"]) == {
            "tool_calls_per_completion",
            "tool_failure_rate",
            "tool_use_share",
            "turns_per_completion",
        }
        assert {"pass_at_k", "maj_at_k"} <= set(report[model]["sampled"])
    assert report["reward_weights"] == {"Counter": 1.0}
    assert "| pass@2 | maj@2 |" in markdown and "used a tool" in markdown


@pytest.mark.kedro_run
def test_a_bad_tool_in_a_variant_is_one_short_error_and_nothing_runs(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    shutil.copy(PROJECT_ROOT / "tests/tool_examples.py", project / "src/my_tools.py")
    (project / "conf/local/parameters.yml").write_text(
        "debug:\n  run:\n    tools: [my_tools:undocumented]\n    environment: my_tools:NoReset\n"
    )
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "parameter 'debug.run.tools[0]' = 'my_tools:undocumented'" in result.stderr
    assert "parameter 'debug.run.environment' = 'my_tools:NoReset': NoReset has no reset method" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 4
    assert not (project / "data/02_intermediate").exists() and not mlflow_runs(project)


def test_pass_and_majority_at_k() -> None:
    # Two prompts, three samples each: the first right once (its majority answer wrong), the second right twice.
    correct = np.array([0.0, 1.0, 0.0, 1.0, np.nan, 1.0])
    answers = ["4", "5", "4", "7", None, "7"]
    assert at_k(correct, answers, 3) == {"pass_at_k": 1.0, "maj_at_k": 0.5}
    assert at_k(np.zeros(2), [None, None], 2) == {"pass_at_k": 0.0, "maj_at_k": 0.0}


def test_the_answer_of_a_completion_is_its_final_reply_or_the_patterns_last_match() -> None:
    with_tool = [
        {"role": "assistant", "content": "", "tool_calls": []},
        {"role": "tool", "name": "multiply", "content": "42"},
        {"role": "assistant", "content": " 42 "},
    ]
    assert final_answer(with_tool, None) == "42"
    assert final_answer("so \\boxed{3} then \\boxed{4}", r"\\boxed\{(.+?)\}") == "4"
    assert final_answer("no number", r"\d+") is None


@pytest.mark.kedro_run
@pytest.mark.trainer
def test_grpo_tools_trains_and_validates_with_the_calculator_and_records_tool_use(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    short = {
        "training.max_steps": 4,
        "run.completion_samples_every": 1,
        "validation.max_prompts": 16,
        "validation.sampled_completions": 2,
        "warm_start.sft.per_device_train_batch_size": 8,
    }
    run_kedro(project, "run", "--pipelines=grpo_tools", params_option("tools", short))
    report = json.loads((project / "data/08_reporting/tools/validation_report.json").read_text())
    for model in ("base", "trained"):
        assert report[model]["tool_use"]["tool_calls_per_completion"] > 0, report[model]  # the warm start calls
        assert {"pass_at_k", "maj_at_k", "tool_use"} <= set(report[model]["sampled"])
    assert any(sample["trained_completion"].startswith("call multiply(") for sample in report["samples"])
    page = (project / "data/08_reporting/tools/training_completions.html").read_text()
    assert "call multiply(" in page and "[multiply: " in page  # the call and the tool's answer, turn by turn
    (run,) = mlflow_runs(project, "grpo_tools")
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for metric in ("tools/call_frequency", "tools/failure_frequency", "tools/use_share", "tools/turns"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2, 3, 4], metric

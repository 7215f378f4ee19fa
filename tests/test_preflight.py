"""The pre-run checks are one library function: every problem of a variant before any work, in-process."""

from __future__ import annotations

import pandas as pd
import pytest

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.preflight import PreflightError, preflight
from grpo_pipeline.prompts import PromptDataError
from tests.conftest import PROJECT_ROOT

DEBUG = load_parameters(PROJECT_ROOT / "conf", "base")["debug"]
GOOD_ROWS = pd.DataFrame({"prompt": ["Which is the largest of 1, 2 and 3?"] * 3, "answer": ["3", "3", "3"]})


def test_good_parameters_and_rows_give_the_run_config() -> None:
    config = preflight(DEBUG, "debug", (GOOD_ROWS, "rows.jsonl"))
    assert config.variant == "debug" and config.rewards.names == ["accuracy"]


def test_every_failed_check_is_reported_together() -> None:
    bad_rows = GOOD_ROWS.assign(answer=["3", "three", "3"])
    raw = {**DEBUG, "run": {**DEBUG["run"], "rollout_func": "no_such_module:rollout"}}
    with pytest.raises(PreflightError) as error:
        preflight(raw, "debug", (bad_rows, "rows.jsonl"))
    message = str(error.value)
    assert "'three' is not an integer" in message  # the data check
    assert "parameter 'debug.run.rollout_func' = 'no_such_module:rollout'" in message  # the rollout check


def test_one_failed_check_keeps_its_own_error() -> None:
    with pytest.raises(PromptDataError, match=r"'three' is not an integer"):
        preflight(DEBUG, "debug", (GOOD_ROWS.assign(answer=["3", "three", "3"]), "rows.jsonl"))


def test_parameter_problems_come_first_and_alone() -> None:
    raw = {**DEBUG, "training": {**DEBUG["training"], "num_generations": 3}}
    with pytest.raises(
        ParameterError, match=r"generation_batch_size \(32\) must be divisible by num_generations \(3\)"
    ):
        preflight(raw, "debug", (GOOD_ROWS.assign(answer=["x"] * 3), "rows.jsonl"))


def test_a_prompt_and_completion_longer_than_the_model_takes_are_refused_before_work() -> None:
    raw = {**DEBUG, "formatting": {**DEBUG["formatting"], "max_prompt_length": 250}}
    with pytest.raises(ParameterError) as error:
        preflight(raw, "debug", (GOOD_ROWS, "rows.jsonl"))
    completion = DEBUG["training"].get("max_completion_length") or 8
    assert (
        f"parameter 'debug.formatting.max_prompt_length' (250) + 'debug.training.max_completion_length' ({completion}) "
        f"= {250 + completion} tokens, more than the model's max_position_embeddings = 256 (parameter "
        "'debug.model.build_tiny'); lower one of them"
    ) in str(error.value)
    preflight({**raw, "formatting": {**DEBUG["formatting"], "max_prompt_length": 256 - completion}}, "debug")


def solution_reward(completions: list[str], solution: list[str], **kwargs: object) -> list[float]:
    return [float(completion == reference) for completion, reference in zip(completions, solution, strict=True)]


def test_a_reward_taking_a_column_the_rows_lack_is_refused_before_training() -> None:
    # TRL hands a reward every dataset column by name: without a 'solution' column this reward would raise a
    # TypeError at its first call, minutes into training.
    raw = {**DEBUG, "reward": {"functions": ["accuracy", "tests.test_preflight:solution_reward"], "weights": None}}
    with pytest.raises(PromptDataError, match=r"rows.jsonl: reward 'solution_reward' takes 'solution'") as error:
        preflight(raw, "debug", (GOOD_ROWS, "rows.jsonl"))
    assert "data.required_columns" in str(error.value)
    data = {**DEBUG["data"], "required_columns": ["answer", "solution"]}
    config = preflight({**raw, "data": data}, "debug", (GOOD_ROWS.assign(solution=["3"] * 3), "rows.jsonl"))
    assert config.rewards.names == ["accuracy", "solution_reward"]


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"learning_rate": -0.1}, r"parameter 'debug.training': its optimizer \(\w+\) .*Invalid learning rate: -0.1"),
        ({"adam_beta1": 1.5}, r"Invalid beta parameter at index 0: 1.5"),
        (
            {"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"num_cycle": 2}},
            r"parameter 'debug.training.lr_scheduler_kwargs' = \{'num_cycle': 2\}: the 'cosine' schedule refuses it",
        ),
    ],
)
def test_what_the_optimizer_or_scheduler_would_refuse_at_step_one_is_refused_before_work(
    training: dict[str, object], message: str
) -> None:
    # GRPOConfig accepts each of these; torch's optimizer or the schedule refused them once training started.
    with pytest.raises(ParameterError, match=message):
        preflight({**DEBUG, "training": {**DEBUG["training"], **training}}, "debug", (GOOD_ROWS, "rows.jsonl"))

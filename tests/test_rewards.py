from __future__ import annotations

import asyncio
from typing import Any

import pytest

from grpo_pipeline.config.schema import RewardParams
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.rewards import REWARD_FUNCTIONS, RewardError, RewardSet, resolve_rewards
from grpo_pipeline.rewards.arithmetic import accuracy_reward, format_reward, length_reward
from grpo_pipeline.rewards.guard import guarded, is_async_reward


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_accuracy_reads_the_stated_answer_in_text_or_chat_completions() -> None:
    completions = ["12", chat("-3"), "the answer is 7", "", chat("13")]
    assert accuracy_reward(completions, answer=["12", "-3", "7", "1", "12"]) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_accuracy_reads_an_equation_by_its_result_not_its_first_operand() -> None:
    # A real model answers "What is 7 + 7?" with "7 + 7 = 14": right, though its first integer is 7. And "12 * 1 = 1"
    # is wrong, though its first integer is the answer 12; an equation cut before its result states no answer.
    completions = ["7 + 7 = 14", chat("12 * 1 = 1"), "2 - 11 = -9\n", "12 * 11 =", "x = 3, so x + 1 = 4."]
    assert accuracy_reward(completions, answer=["14", "12", "-9", "12", "4"]) == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_format_prefers_bare_integers_and_gives_partial_credit() -> None:
    rewards = format_reward(["42", " -7 ", "4a2b", "abc", ""])
    assert rewards[:2] == [1.0, 1.0]
    assert rewards[2] == pytest.approx(0.25)
    assert rewards[3:] == [0.0, 0.0]


def test_length_rewards_short_non_empty_answers() -> None:
    assert length_reward(["12", "1234", "", chat("123456")]) == [1.0, 0.75, 0.0, 0.5]


def test_rewards_stay_in_unit_interval() -> None:
    completions = ["", "1", "-123456789", "x" * 50, "12 apples"]
    for function in REWARD_FUNCTIONS.values():
        assert all(0.0 <= value <= 1.0 for value in function(completions, answer=["1"] * len(completions)))


def rewards_of(*functions: Any) -> RewardSet:
    return resolve_rewards(RewardParams(functions=list(functions)), "debug.reward")


def test_unknown_reward_name_suggests_the_closest() -> None:
    with pytest.raises(
        ParameterError, match=r"functions\[1\]' \(acuracy\): unknown reward function 'acuracy'; did you"
    ):
        rewards_of("format", "acuracy")


def test_each_reward_has_one_name_which_is_what_trl_logs_and_none_is_trls() -> None:
    rewards = rewards_of("accuracy", "format", "accuracy_reward", {"function": "length", "name": "short"})
    assert rewards.names == ["accuracy", "format", "accuracy_reward", "short"]
    assert [function.__name__ for function in rewards.functions] == rewards.names  # TRL: rewards/<__name__>/mean
    assert not set(REWARD_FUNCTIONS) & {"accuracy_reward", "think_format_reward", "reasoning_accuracy_reward"}


async def async_brevity(completions: list[Any], short: bool = False, **kwargs: Any) -> list[float]:
    return [1.0 if len(text) <= 2 else 0.0 for text in completions][: 1 if short else None]


def test_an_async_reward_stays_async_for_trl_to_run_concurrently() -> None:
    (reward,) = resolve_rewards(RewardParams(functions=["tests.reward_examples:judge_async"])).functions
    assert is_async_reward(reward) and reward.__name__ == "judge_async"
    assert asyncio.run(reward(completions=["12", "1234"], answer=["12", "3"])) == [1.0, 0.0]
    with pytest.raises(RewardError, match=r"Reward 'async_brevity' returned 1 values for 2 completions"):
        asyncio.run(guarded("async_brevity", async_brevity)(completions=["a", "b"], short=True))


def test_none_means_not_applicable_and_passes_the_guard() -> None:
    reward = guarded(
        "only_even", lambda completions, **kwargs: [None if i % 2 else 1.0 for i in range(len(completions))]
    )
    assert reward(completions=["a", "b", "c"]) == [1.0, None, 1.0]


def nan_for_letters(completions: list[Any], **kwargs: Any) -> list[float | None]:
    return [float("nan") if text.isalpha() else None if text == "" else 1.0 for text in completions]


def divide_by_answer(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    return [1 / int(value) for value in answer]


@pytest.mark.parametrize(
    ("completions", "message"),
    [
        (["1", "x"], r"Reward 'nan_for_letters' returned nan outside training on prompt 'p2', completion 'x'"),
        (["1", "x", ""], r"Reward 'nan_for_letters' returned nan outside training on prompt 'p2', completion 'x'"),
    ],
)
def test_a_non_finite_reward_names_the_reward_and_the_completion(completions: list[str], message: str) -> None:
    with pytest.raises(RewardError, match=message):
        guarded("nan_for_letters", nan_for_letters)(completions, prompts=["p1", "p2"])


def test_a_raising_reward_names_the_reward_and_the_row_that_raised() -> None:
    with pytest.raises(
        RewardError, match=r"Reward 'ratio' raised ZeroDivisionError: .* on prompt 'p2', completion 'b'"
    ):
        guarded("ratio", divide_by_answer)(["a", "b", "c"], prompts=["p1", "p2", "p3"], answer=["1", "0", "2"])


def test_rewards_by_import_path_with_kwargs_and_trl_built_ins() -> None:
    reward = RewardParams(
        functions=[
            "format",
            {"function": "tests.reward_examples:brevity", "kwargs": {"max_chars": 2}},
            "think_format_reward",
            {"function": "get_soft_overlong_punishment", "kwargs": {"max_completion_len": 8, "soft_punish_cache": 4}},
        ]
    )
    rewards = resolve_rewards(reward)
    brevity, think, overlong = rewards.functions[1:]
    assert rewards.names == ["format", "brevity", "think_format_reward", "soft_overlong_punishment_reward"]
    assert [brevity.__name__, think.__name__, overlong.__name__] == rewards.names[1:]
    assert brevity(["12", "123"]) == [1.0, 0.0]
    assert think([[{"content": "<think>\nx\n</think>\n12"}]]) == [1.0]
    assert overlong(["a", "b"], completion_ids=[[1] * 3, [1] * 6]) == [0.0, -0.5]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_such_module.rewards:fn", r"'no_such_module.rewards:fn' cannot be imported"),
        (
            "tests.reward_examples:not_a_reward",
            r"\(tests.reward_examples:not_a_reward\): calling it with kwargs \{\} failed",
        ),
        (
            {"function": "get_soft_overlong_punishment", "kwargs": {"max_len": 8}},
            r"\(get_soft_overlong_punishment\): calling it .*unexpected keyword argument 'max_len'",
        ),
        ({"function": "tests.reward_examples:brevity", "kwargs": {"limit": 2}}, r"unexpected keyword argument 'limit'"),
        ("think_format", r"unknown reward function 'think_format'; did you mean 'think_format_reward'"),
    ],
)
def test_bad_reward_entries_are_parameter_errors(entry: Any, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        resolve_rewards(RewardParams(functions=[entry]))

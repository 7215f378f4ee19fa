from __future__ import annotations

import pytest

from grpo_pipeline.rewards import REWARD_FUNCTIONS, get_reward_functions
from grpo_pipeline.rewards.arithmetic import accuracy_reward, format_reward, length_reward


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_accuracy_reads_first_integer_in_text_or_chat_completions() -> None:
    completions = ["12", chat("-3"), "the answer is 7", "", chat("13")]
    assert accuracy_reward(completions, answer=["12", "-3", "7", "1", "12"]) == [1.0, 1.0, 1.0, 0.0, 0.0]


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


def test_unknown_reward_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"Unknown reward function 'acuracy'.*Did you mean 'accuracy'"):
        get_reward_functions(["format", "acuracy"])

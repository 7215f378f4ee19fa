from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from grpo_pipeline.pipelines.grpo.nodes import format_prompts
from grpo_pipeline.prompts import PromptDataError
from tests.conftest import variant_config


def frame(*questions: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": question}] for question in questions],
            "answer": ["1"] * len(questions),
        }
    )


def test_applies_chat_template_and_counts_tokens(tiny_model_dir: Path) -> None:
    train, evaluation, stats = format_prompts(
        frame("What is 1 + 0?", "What is 2 - 1?"),
        frame("1 + 0 = ?"),
        str(tiny_model_dir),
        variant_config(formatting={"max_prompt_length": 64}),
    )
    assert train["prompt_text"][0] == "<|user|>What is 1 + 0?<|end|><|assistant|>"
    # character-level tokenizer: one token per character plus three special tokens
    assert train["prompt_tokens"][0] == len("What is 1 + 0?") + 3
    assert stats["train"]["prompts"] == 2 and stats["train"]["dropped_over_max_length"] == 0
    assert evaluation["prompt"][0] == [{"role": "user", "content": "1 + 0 = ?"}]


def test_drops_prompts_over_max_length_and_reports_how_many(tiny_model_dir: Path) -> None:
    long_question = "What is " + " + ".join(["1"] * 30) + "?"
    train, _, stats = format_prompts(
        frame("What is 1 + 0?", long_question),
        frame("1 + 0 = ?"),
        str(tiny_model_dir),
        variant_config(formatting={"max_prompt_length": 32}),
    )
    assert len(train) == 1
    assert stats["train"]["dropped_over_max_length"] == 1
    assert stats["train"]["tokens_max"] > 32


def test_every_prompt_over_length_is_an_error(tiny_model_dir: Path) -> None:
    with pytest.raises(PromptDataError, match=r"formatting.max_prompt_length=4 tokens"):
        format_prompts(
            frame("What is 1 + 0?"),
            frame("1 + 0 = ?"),
            str(tiny_model_dir),
            variant_config(formatting={"max_prompt_length": 4}),
        )


def test_text_prompt_format_hands_the_trainer_templated_strings(tiny_model_dir: Path) -> None:
    train, _, _ = format_prompts(
        frame("What is 1 + 0?"),
        frame("1 + 0 = ?"),
        str(tiny_model_dir),
        variant_config(formatting={"max_prompt_length": 64, "prompt_format": "text"}),
    )
    assert train["prompt"][0] == train["prompt_text"][0] == "<|user|>What is 1 + 0?<|end|><|assistant|>"

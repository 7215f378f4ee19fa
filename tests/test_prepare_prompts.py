from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from grpo_pipeline.io.prompt_dataset import PromptJSONLinesDataset
from grpo_pipeline.pipelines.grpo.nodes import prepare_prompts
from grpo_pipeline.prompts import PromptDataError
from tests.conftest import variant_config

DATA = {"prompt_column": "prompt", "required_columns": ["answer"], "eval_size": 2}
REWARD = {"functions": ["accuracy", "format", "length"]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(path: Path) -> pd.DataFrame:
    return PromptJSONLinesDataset(filepath=str(path)).load()


def rows(count: int) -> list[str]:
    return [json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(count)]


def test_normalises_text_and_chat_prompts_and_drops_duplicates(tmp_path: Path) -> None:
    lines = [
        *rows(6),
        json.dumps({"prompt": [{"role": "user", "content": "  What is 9 + 9?  "}], "answer": 18}),
        json.dumps({"prompt": "What is 0 + 1?", "answer": "1"}),  # duplicate of the first row
    ]
    train, evaluation = prepare_prompts(
        load(write_lines(tmp_path / "p.jsonl", lines)), variant_config(data=DATA, reward=REWARD, seed=1)
    )
    assert len(train) + len(evaluation) == 7
    assert len(evaluation) == 2
    combined = pd.concat([train, evaluation])
    assert all(isinstance(prompt, list) and prompt[-1]["role"] == "user" for prompt in combined["prompt"])
    assert "What is 9 + 9?" in {prompt[-1]["content"] for prompt in combined["prompt"]}
    assert set(combined["answer"]) >= {"18", "1"}


def test_split_is_seeded(tmp_path: Path) -> None:
    frame = load(write_lines(tmp_path / "p.jsonl", rows(20)))
    first = prepare_prompts(frame, variant_config(data=DATA, reward=REWARD, seed=7))[1]
    again = prepare_prompts(frame, variant_config(data=DATA, reward=REWARD, seed=7))[1]
    other = prepare_prompts(frame, variant_config(data=DATA, reward=REWARD, seed=8))[1]
    assert first["answer"].tolist() == again["answer"].tolist()
    assert first["answer"].tolist() != other["answer"].tolist()


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"prompt": "What is 1 + 1?"})] * 4)
    with pytest.raises(PromptDataError, match=r"p\.jsonl: column 'answer' is missing"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_empty_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "empty.jsonl", [""])
    with pytest.raises(PromptDataError, match=r"empty\.jsonl is empty"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_broken_json_is_reported_with_every_other_bad_row(tmp_path: Path) -> None:
    lines = [
        *rows(4),
        '{"prompt": "What is 1 + 1?", "answer": ',  # line 5: cut short
        *rows(2),
        json.dumps({"answer": "3"}),  # line 8: no prompt
        "[1, 2]",  # line 9: not an object
    ]
    with pytest.raises(PromptDataError) as error:
        prepare_prompts(
            load(write_lines(tmp_path / "bad.jsonl", lines)), variant_config(data=DATA, reward=REWARD, seed=0)
        )
    listed = str(error.value).splitlines()
    assert listed[0].startswith("3 problem(s) in ")
    assert [line.split(": ")[0] for line in listed[1:]] == [f"  - {tmp_path}/bad.jsonl line {n}" for n in (5, 8, 9)]
    assert "malformed JSON (Expecting value, column 39)" in listed[1] and "at at" not in listed[1]
    assert "the prompt is missing or empty" in listed[2]
    assert "expected a JSON object, got list" in listed[3]


def test_line_numbers_count_blank_lines_as_an_editor_does(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([*rows(2), "", "  ", "{oops", *rows(2)]) + "\n", encoding="utf-8")
    with pytest.raises(PromptDataError, match=r"p\.jsonl line 5: malformed JSON"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_bad_prompt_row_names_line(tmp_path: Path) -> None:
    bad = json.dumps({"prompt": [{"role": "robot", "content": "hi"}], "answer": "1"})
    path = write_lines(tmp_path / "p.jsonl", [*rows(4), bad])
    with pytest.raises(PromptDataError, match=r"p\.jsonl line 5: message 0 has role 'robot'"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_empty_answer_names_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [*rows(2), json.dumps({"prompt": "What is 1 + 1?", "answer": " "})])
    with pytest.raises(PromptDataError, match=r"line 3: 'answer' is empty"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_too_few_prompts_for_eval_split(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", rows(2))
    with pytest.raises(PromptDataError, match=r"data\.eval_size=2"):
        prepare_prompts(load(path), variant_config(data=DATA, reward=REWARD, seed=0))


def test_unknown_data_parameter() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'debug\.data\.eval_sise': did you mean 'eval_size'"):
        prepare_prompts(pd.DataFrame(), variant_config(data={**DATA, "eval_sise": 3}, reward=REWARD, seed=0))


def test_every_bad_row_is_reported_in_one_message(tmp_path: Path) -> None:
    lines = [
        *rows(3),
        json.dumps({"prompt": [{"role": "robot", "content": "hi"}], "answer": "1"}),
        json.dumps({"prompt": "What is 1 + 1?", "answer": " "}),
        json.dumps({"prompt": "What is 1 + 1?", "answer": "two"}),
        json.dumps({"answer": "3"}),
    ]
    with pytest.raises(PromptDataError) as error:
        prepare_prompts(
            load(write_lines(tmp_path / "p.jsonl", lines)), variant_config(data=DATA, reward=REWARD, seed=0)
        )
    message = str(error.value)
    assert message.startswith("4 problem(s) in ") and message.count("p.jsonl line ") == 4
    assert "p.jsonl line 4: message 0 has role 'robot'" in message
    assert "p.jsonl line 5: 'answer' is empty" in message
    assert "p.jsonl line 6: 'answer' 'two' is not an integer (reward 'accuracy' reads it)" in message
    assert "p.jsonl line 7: the prompt is missing or empty" in message


def test_many_bad_rows_list_twenty_and_count_the_rest(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"What is {i}?", "answer": f"x{i}"}) for i in range(25)]
    with pytest.raises(PromptDataError, match=r"(?s)^25 problem\(s\) in .*\n  \.\.\. and 5 more$") as error:
        prepare_prompts(
            load(write_lines(tmp_path / "p.jsonl", lines)), variant_config(data=DATA, reward=REWARD, seed=0)
        )
    assert str(error.value).count(" is not an integer") == 20


def test_answers_are_free_text_when_no_reward_checks_them(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"Name {i}", "answer": f"x{i}"}) for i in range(5)]
    train, evaluation = prepare_prompts(
        load(write_lines(tmp_path / "p.jsonl", lines)),
        variant_config(data=DATA, reward={"functions": ["length"]}, seed=0),
    )
    assert len(train) + len(evaluation) == 5


def test_no_problem_is_in_both_splits_whatever_its_wording(tmp_path: Path) -> None:
    lines = []
    for i in range(30):
        lines.append(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}))
        lines.append(
            json.dumps({"prompt": [{"role": "user", "content": f"  what IS {i} +   1?"}], "answer": str(i + 1)})
        )
    for seed in range(5):
        train, evaluation = prepare_prompts(
            load(write_lines(tmp_path / "p.jsonl", lines)), variant_config(data=DATA, reward=REWARD, seed=seed)
        )
        assert len(train) + len(evaluation) == 60
        assert not set(train["answer"]) & set(evaluation["answer"]), seed
        assert len(evaluation) == 2  # one problem, both wordings


def test_a_split_key_column_keeps_each_problem_on_one_side(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": f"Problem {i % 10}, wording {i}", "answer": str(i % 10), "problem_id": f"p{i % 10}"})
        for i in range(40)
    ]
    data = {**DATA, "eval_size": 8, "split_key": ["problem_id"]}
    train, evaluation = prepare_prompts(
        load(write_lines(tmp_path / "p.jsonl", lines)), variant_config(data=data, reward=REWARD, seed=3)
    )
    assert not set(train["problem_id"]) & set(evaluation["problem_id"])
    assert len(evaluation) == 8 and len(train) == 32


def test_plain_columns_become_chat_prompts_with_template_system_prompt_and_extracted_answer() -> None:
    raw = pd.DataFrame(
        {
            "question": [f"Tom has {i} apples and buys 2. How many now?" for i in range(6)],
            "solution": [f"{i} + 2 = {i + 2}\n#### {i + 2}" for i in range(6)],
        }
    )
    data = {
        **DATA,
        "columns": {"solution": "answer"},
        "prompt_template": "{question} Answer with a number.",
        "system_prompt": "You are a terse math tutor.",
        "answer_pattern": r"#### (.+)$",
    }
    train, evaluation = prepare_prompts(raw, variant_config(data=data, reward=REWARD, seed=0))
    row = pd.concat([train, evaluation]).set_index("answer").loc["5"]
    assert row["prompt"] == [
        {"role": "system", "content": "You are a terse math tutor."},
        {"role": "user", "content": "Tom has 3 apples and buys 2. How many now? Answer with a number."},
    ]


def test_an_answer_the_pattern_cannot_find_names_the_row() -> None:
    raw = pd.DataFrame({"question": ["a", "b", "c", "d"], "answer": ["#### 1", "#### 2", "no marker", "#### 4"]})
    data = {**DATA, "prompt_template": "{question}", "answer_pattern": r"#### (.+)$"}
    with pytest.raises(PromptDataError, match=r"row 3: 'answer' does not match data.answer_pattern"):
        prepare_prompts(raw, variant_config(data=data, reward=REWARD, seed=0))


def splits(train_range: range, test_range: range) -> DatasetDict:
    def table(numbers: range) -> Dataset:
        return Dataset.from_dict(
            {"prompt": [f"What is {i} + 1?" for i in numbers], "answer": [str(i + 1) for i in numbers]}
        )

    return DatasetDict({"train": table(train_range), "test": table(test_range)})


def test_the_sources_own_test_split_is_the_eval_set_and_shares_no_problem_with_training() -> None:
    # Problems 20..24 are in both splits: they stay in eval and leave training.
    source = splits(range(25), range(20, 40))
    data = {**DATA, "eval_size": 8, "eval_split": "test"}
    train, evaluation = prepare_prompts(source, variant_config(data=data, reward=REWARD, seed=0))
    assert len(evaluation) == 8 and set(evaluation["answer"]) <= {str(i + 1) for i in range(20, 40)}
    assert not set(train["answer"]) & set(evaluation["answer"])
    assert len(train) == 25 - len({str(i + 1) for i in range(20, 25)} & set(evaluation["answer"]))
    again, _ = prepare_prompts(source, variant_config(data={**data, "eval_size": 100}, reward=REWARD, seed=0))
    assert set(again["answer"]) == {str(i + 1) for i in range(20)}  # the whole test split held out


@pytest.mark.parametrize(
    ("source", "data", "message"),
    [
        (
            splits(range(5), range(5, 9)),
            {"eval_split": "validation"},
            r"holds the splits \['test', 'train'\], not 'validation'; set data.eval_split",
        ),
        (splits(range(5), range(5, 9)), {"train_split": "training"}, r"not 'training'; set data.train_split"),
        (
            pd.DataFrame({"prompt": ["a", "b", "c"], "answer": ["1", "2", "3"]}),
            {"eval_split": "test"},
            r"one table, so it has no split 'test'",
        ),
    ],
)
def test_missing_splits_name_the_parameter(source: Any, data: dict[str, Any], message: str) -> None:
    with pytest.raises(PromptDataError, match=message):
        prepare_prompts(source, variant_config(data={**DATA, **data}, reward=REWARD, seed=0))

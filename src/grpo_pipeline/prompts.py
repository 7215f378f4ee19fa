"""The prompt rules: what a usable prompt row is, normalisation, de-duplication, the train/eval split,
and formatting through the tokenizer's chat template with a length limit.

Errors name the source file, the row and the fix (:class:`PromptDataError`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from grpo_pipeline.chat_template import render, training_chat_template
from grpo_pipeline.config.schema import DataParams, FormattingParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.rewards.columns import ColumnCheck
from grpo_pipeline.tools import ToolSet

logger = logging.getLogger(__name__)

# A raw prompt frame may carry its source (``frame.attrs``) and each row's line in it, for error messages.
SOURCE_ATTR = "source"
# What formatting adds beside the prompt, for the pipeline's own use: GRPOTrainer and the rewards never see them.
FORMATTED_COLUMNS = ("prompt_text", "prompt_tokens")
LINE_COLUMN = "line_number"
# A row the reader could not parse (a JSON Lines line that is not an object) holds only its line and this problem.
ROW_PROBLEM_COLUMN = "row_problem"
MESSAGE_ROLES = {"system", "user", "assistant"}
# Row problems listed in one error; the rest are counted.
MAX_PROBLEMS = 20


class PromptDataError(ProjectError, ValueError):
    """A prompt file that cannot be used; the message names the file, the row and the fix."""


def _validate_messages(value: Any) -> str | None:
    """None when ``value`` is a usable chat prompt, else what is wrong with it."""
    if not value:
        return "the message list is empty"
    for index, message in enumerate(value):
        if not isinstance(message, dict) or set(message) - {"role", "content"} or "content" not in message:
            return f"message {index} must be an object with 'role' and 'content'"
        if message.get("role") not in MESSAGE_ROLES:
            return f"message {index} has role {message.get('role')!r}; use one of {sorted(MESSAGE_ROLES)}"
        if not isinstance(message["content"], str) or not message["content"].strip():
            return f"message {index} has empty or non-text content"
    if value[-1]["role"] != "user":
        return "the last message must come from the user"
    return None


def normalise_prompt(value: Any) -> list[dict[str, str]] | str:
    """Chat messages with stripped text, or the problem as a string."""
    if isinstance(value, np.ndarray | tuple):  # Parquet and Hugging Face datasets give arrays of messages
        value = list(value)
    if not isinstance(value, list) and _is_blank(value):
        return "the prompt is missing or empty"
    if isinstance(value, str):
        return [{"role": "user", "content": value.strip()}]
    if isinstance(value, list):
        problem = _validate_messages(value)
        if problem:
            return problem
        return [{"role": message["role"], "content": message["content"].strip()} for message in value]
    return f"the prompt must be text or a list of chat messages, got {type(value).__name__}"


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _prompt_of(record: dict[str, Any], params: DataParams) -> list[dict[str, str]] | str:
    """The row's prompt as chat messages (built with ``data.prompt_template``, led by ``data.system_prompt``), or
    what is wrong with it."""
    if params.prompt_template is not None:
        try:
            value: Any = params.prompt_template.format(**record)
        except (KeyError, IndexError) as error:
            return f"data.prompt_template names {error}, which the row does not have"
    else:
        value = record[params.prompt_column]
    prompt = normalise_prompt(value)
    if isinstance(prompt, list) and params.system_prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": params.system_prompt.strip()}, *prompt]
    return prompt


def _with_answer_extracted(record: dict[str, Any], params: DataParams) -> dict[str, Any] | str:
    """``record`` with its answer (``data.answer_column``) cut out by ``data.answer_pattern``, or what is wrong."""
    column = params.answer_column
    if params.answer_pattern is None or column not in record or _is_blank(record[column]):
        return record
    match = re.search(params.answer_pattern, str(record[column]), flags=re.MULTILINE)
    if match is None:
        return f"'{column}' does not match data.answer_pattern {params.answer_pattern!r}"
    return {**record, column: (match.group(1) if match.groups() else match.group(0)).strip()}


def _row_problems(
    record: dict[str, Any],
    prompt: list[dict[str, str]] | str,
    params: DataParams,
    checks: list[tuple[str, str, ColumnCheck]],
) -> list[str]:
    problems = [prompt] if isinstance(prompt, str) else []
    problems += [f"'{column}' is empty" for column in params.required_columns if _is_blank(record[column])]
    for reward, column, check in checks:
        if not _is_blank(record[column]) and (issue := check(str(record[column]))):
            problems.append(f"'{column}' {issue} (reward '{reward}' reads it)")
    return problems


def normalised_rows(
    raw_prompts: pd.DataFrame, params: DataParams, checks: list[tuple[str, str, ColumnCheck]] = ()
) -> pd.DataFrame:
    """One row per raw row: the prompt as chat messages and each required column as stripped text.

    Every row is checked (prompt, required columns, the columns each reward declares checks for) and all
    problems, up to :data:`MAX_PROBLEMS` of them listed, are raised in one :class:`PromptDataError`.
    """
    source = raw_prompts.attrs.get(SOURCE_ATTR, "the raw prompt file")
    if raw_prompts.empty:
        raise PromptDataError(f"{source} is empty: it needs one JSON object per line with a prompt and an answer.")
    # JSON Lines sources carry each record's line; for any other table, rows are counted from 1.
    unit = "line" if LINE_COLUMN in raw_prompts else "row"
    numbers = list(raw_prompts[LINE_COLUMN]) if unit == "line" else list(range(1, len(raw_prompts) + 1))
    # (line or row number, problem): listed in file order, whichever check found them.
    problems: list[tuple[int, str]] = []
    if ROW_PROBLEM_COLUMN in raw_prompts:
        unreadable = raw_prompts[ROW_PROBLEM_COLUMN].notna().to_numpy()
        problems += [
            (number, problem)
            for number, problem, bad in zip(numbers, raw_prompts[ROW_PROBLEM_COLUMN], unreadable, strict=True)
            if bad
        ]
        numbers = [number for number, bad in zip(numbers, unreadable, strict=True) if not bad]
        raw_prompts = raw_prompts[~unreadable].drop(columns=ROW_PROBLEM_COLUMN)
    raw_prompts = raw_prompts.rename(columns=params.columns)
    prompt_columns = [] if params.prompt_template is not None else [params.prompt_column]
    needed = list(
        dict.fromkeys(
            [*prompt_columns, *params.required_columns, *(params.split_key or []), *(c for _, c, _ in checks)]
        )
    )
    # With no readable row there are no columns to miss: the unreadable rows are the problems.
    missing = [column for column in needed if column not in raw_prompts.columns] if not raw_prompts.empty else []
    if missing:
        present = sorted(set(raw_prompts.columns) - {LINE_COLUMN})
        columns_problem = (
            ", ".join(f"column '{column}' is missing" for column in missing)
            + f" (columns present: {present}). Add it to every row, or change data.prompt_column / "
            "data.required_columns."
        )
        if not problems:
            raise PromptDataError(f"{source}: {columns_problem}")
        problems.insert(0, (0, columns_problem))
    else:
        records = [_with_answer_extracted(record, params) for record in raw_prompts.to_dict(orient="records")]
        problems += [
            (number, record) for number, record in zip(numbers, records, strict=True) if isinstance(record, str)
        ]
        records = [record if isinstance(record, dict) else {} for record in records]
        prompts = [_prompt_of(record, params) if record else "" for record in records]
        problems += [
            (number, problem)
            for number, record, prompt in zip(numbers, records, prompts, strict=True)
            if record
            for problem in _row_problems(record, prompt, params, checks)
        ]
    if problems:
        listed = [
            f"{source} {unit} {number}: {problem}" if number else f"{source}: {problem}"
            for number, problem in sorted(problems, key=lambda numbered: numbered[0])
        ]
        more = f"\n  ... and {len(listed) - MAX_PROBLEMS} more" if len(listed) > MAX_PROBLEMS else ""
        raise PromptDataError(
            f"{len(listed)} problem(s) in {source}; fix or remove those rows:\n  - "
            + "\n  - ".join(listed[:MAX_PROBLEMS])
            + more
        )
    return pd.DataFrame(
        [
            {
                "prompt": prompt,
                **{column: _as_text(record[column]) for column in kept_columns(params)},
            }
            for record, prompt in zip(records, prompts, strict=True)
        ]
    )


def _as_text(value: Any) -> str:
    """A kept column's value as text: structured values (a solved tool-call trace, say) as JSON."""
    if isinstance(value, np.ndarray | tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value).strip()


def kept_columns(params: DataParams) -> list[str]:
    """The columns a prepared prompt row keeps beside the prompt: the required ones and the split key."""
    return list(dict.fromkeys([*params.required_columns, *(params.split_key or [])]))


def _prompt_content(messages: list[dict[str, str]]) -> str:
    """The prompt's text, whatever its form (text or chat) and spacing or case."""
    return " ".join(" ".join(message["content"].lower().split()) for message in messages)


def problem_keys(frame: pd.DataFrame, params: DataParams) -> pd.Series:
    """What identifies a problem: ``data.split_key``'s columns, or the prompt's content plus the required columns."""
    if params.split_key:
        return frame[params.split_key].astype(str).agg("\x00".join, axis=1)
    return (
        frame["prompt"].map(_prompt_content)
        + "\x00"
        + frame[params.required_columns].astype(str).agg("\x00".join, axis=1)
    )


RawPrompts = pd.DataFrame | Mapping[str, Any]


def _as_frame(table: Any) -> pd.DataFrame:
    """A split as a DataFrame: a pandas table, a Hugging Face ``Dataset``, or a partition's loader (a callable, as
    Kedro's ``PartitionedDataset`` gives them)."""
    table = table() if callable(table) else table
    return table if isinstance(table, pd.DataFrame) else table.to_pandas()


def source_tables(
    raw_prompts: RawPrompts, params: DataParams, source: str = "the raw prompts"
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training table and, with ``data.eval_split``, the source's own eval table; each labelled with its source.

    A source with several splits (a ``datasets.DatasetDict``, a ``PartitionedDataset`` of one file per split, or
    any mapping of split name to table) gives
    ``data.train_split`` and ``data.eval_split``; a single table is the training table.
    """
    if isinstance(raw_prompts, pd.DataFrame):
        if params.eval_split is not None:
            raise PromptDataError(
                f"{raw_prompts.attrs.get(SOURCE_ATTR, source)} is one table, so it has no split "
                f"'{params.eval_split}' (data.eval_split). Point the catalog entry at a source with splits (e.g. a "
                "Hugging Face dataset without `split`), or set data.eval_split to null to hold prompts out of it."
            )
        return raw_prompts, None
    tables = []
    for split, parameter in ((params.train_split, "train_split"), (params.eval_split, "eval_split")):
        if split is None:
            tables.append(None)
            continue
        if split not in raw_prompts:
            raise PromptDataError(
                f"{source} holds the splits {sorted(raw_prompts)}, not '{split}'; set data.{parameter} to one of them."
            )
        table = _as_frame(raw_prompts[split])
        table.attrs.setdefault(SOURCE_ATTR, f"{source} split '{split}'")
        tables.append(table)
    return tables[0], tables[1]


def _deduplicated(frame: pd.DataFrame, params: DataParams) -> tuple[pd.DataFrame, int]:
    key = frame["prompt"].map(json.dumps) + "\x00" + frame[params.required_columns].astype(str).agg("\x00".join, axis=1)
    duplicated = key.duplicated()
    return frame[~duplicated].reset_index(drop=True), int(duplicated.sum())


def _problems_in_seeded_order(frame: pd.DataFrame, params: DataParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices grouped by problem, the groups in an order drawn with ``seed``, and the running row count."""
    codes, _ = pd.factorize(problem_keys(frame, params))  # problems numbered in order of first appearance
    # Each problem's rows, in row order: one stable sort, linear in the rows, however many problems there are.
    groups = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])
    order = np.random.default_rng(seed).permutation(len(groups))
    rows = np.concatenate([groups[index] for index in order])
    return rows, np.cumsum([len(groups[index]) for index in order])


def _whole_problems_up_to(rows_so_far: np.ndarray, size: int) -> int:
    """How many leading rows make whole problems until at least ``size`` rows (all of them when there are fewer)."""
    return int(rows_so_far[min(np.searchsorted(rows_so_far, size), len(rows_so_far) - 1)])


def split_prompts(
    raw_prompts: RawPrompts, params: DataParams, seed: int, checks: list[tuple[str, str, ColumnCheck]] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate and normalise the raw prompt rows, drop duplicates, and split train/eval by problem with ``seed``.

    Eval is drawn from ``data.eval_split`` when set (training rows of the same problems are then dropped),
    otherwise held out of the training table.
    """
    train_table, eval_table = source_tables(raw_prompts, params)
    source = train_table.attrs.get(SOURCE_ATTR, "the raw prompt file")
    frame, duplicates = _deduplicated(normalised_rows(train_table, params, checks), params)
    rows, rows_so_far = _problems_in_seeded_order(frame, params, seed)
    if eval_table is None:
        eval_rows = _whole_problems_up_to(rows_so_far, params.eval_size)
        if eval_rows >= len(frame):
            raise PromptDataError(
                f"{source}: {len(rows_so_far)} distinct problems, not enough for data.eval_size={params.eval_size} "
                "plus a training set. Lower data.eval_size or add prompts."
            )
        eval_prompts = frame.iloc[rows[:eval_rows]].reset_index(drop=True)
        train_prompts = frame.iloc[rows[eval_rows:]].reset_index(drop=True)
    else:
        eval_frame, _ = _deduplicated(normalised_rows(eval_table, params, checks), params)
        eval_order, eval_so_far = _problems_in_seeded_order(eval_frame, params, seed)
        eval_prompts = eval_frame.iloc[eval_order[: _whole_problems_up_to(eval_so_far, params.eval_size)]]
        eval_prompts = eval_prompts.reset_index(drop=True)
        shared = problem_keys(frame, params).isin(set(problem_keys(eval_prompts, params))).to_numpy()
        train_prompts = frame.iloc[rows[~shared[rows]]].reset_index(drop=True)
        if train_prompts.empty:
            raise PromptDataError(f"{source}: every training problem is also in data.eval_split '{params.eval_split}'")
        logger.info(
            "Eval prompts from split '%s'; %d training rows of the same problems dropped",
            params.eval_split,
            int(shared.sum()),
        )
    if params.max_train_prompts is not None:
        train_prompts = train_prompts.head(params.max_train_prompts)
    logger.info(
        "Prompts: %d rows read, %d duplicates dropped, %d problems, %d train / %d eval (no problem in both)",
        len(train_table),
        duplicates,
        len(rows_so_far),
        len(train_prompts),
        len(eval_prompts),
    )
    return train_prompts, eval_prompts


def _length_statistics(lengths: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    return {
        "prompts": len(lengths),
        "dropped_over_max_length": int((~keep).sum()),
        "tokens_min": int(lengths.min()) if len(lengths) else 0,
        "tokens_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "tokens_p95": float(np.percentile(lengths, 95)) if len(lengths) else 0.0,
        "tokens_max": int(lengths.max()) if len(lengths) else 0,
    }


def format_split(
    frame: pd.DataFrame,
    split: str,
    tokenizer: Any,
    params: FormattingParams,
    tools: ToolSet | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One split through the chat template: the kept rows with ``prompt_text`` and ``prompt_tokens``, and statistics.

    The ``prompt`` column of the result is what ``GRPOTrainer`` takes: chat messages, or with
    ``formatting.prompt_format: text`` the templated string; ``prompt_text`` always holds the latter, with the
    descriptions of the tools the row is offered (``tools``) as the trainer renders them (its template, and
    ``chat_template_kwargs``: GRPOConfig's).
    """
    chat_template = training_chat_template(tokenizer, tools=bool(tools and tools.active))
    texts = [
        render(
            tokenizer,
            messages,
            tools=tools.row_tools(row) if tools else None,
            chat_template=chat_template,
            chat_template_kwargs=chat_template_kwargs,
        )
        for messages, row in zip(frame["prompt"], frame.to_dict(orient="records"), strict=True)
    ]
    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
    keep = lengths <= params.max_prompt_length
    statistics = _length_statistics(lengths, keep)
    if (~keep).any():
        logger.warning(
            "%s split: dropped %d of %d prompts longer than formatting.max_prompt_length=%d tokens",
            split,
            int((~keep).sum()),
            len(frame),
            params.max_prompt_length,
        )
    result = frame[keep].copy()
    result["prompt_text"] = [text for text, kept in zip(texts, keep, strict=True) if kept]
    if params.prompt_format == "text":
        result["prompt"] = result["prompt_text"]
    result["prompt_tokens"] = lengths[keep]
    if result.empty:
        raise PromptDataError(
            f"Every {split} prompt is longer than formatting.max_prompt_length={params.max_prompt_length} "
            f"tokens (shortest: {statistics['tokens_min']}). Raise the limit."
        )
    return result.reset_index(drop=True), statistics


def format_splits(
    train_prompts: pd.DataFrame,
    eval_prompts: pd.DataFrame,
    tokenizer: Any,
    params: FormattingParams,
    tools: ToolSet | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Both splits through :func:`format_split`, with their statistics in one record."""
    train, train_statistics = format_split(train_prompts, "train", tokenizer, params, tools, chat_template_kwargs)
    evaluation, eval_statistics = format_split(eval_prompts, "eval", tokenizer, params, tools, chat_template_kwargs)
    statistics = {"max_prompt_length": params.max_prompt_length, "train": train_statistics, "eval": eval_statistics}
    return train, evaluation, statistics

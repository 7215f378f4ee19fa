"""Every check before a run does any work, as one library function the pre-run hook calls.

:func:`preflight` resolves a variant's parameters (names, types, TRL's own config checks, the rewards; see
config/run_config.py), then checks that a model the project builds from a file can be built, that a prompt and its
completion fit in the model's positions, every row of its raw prompts and that they carry every column a reward
takes, the custom rollout, that vLLM generation can work, and that an automatic resume would continue this very run.
Problems of the parameters come first (nothing else can be checked without them); the other checks all run, and what
they find is raised together.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pandas as pd

from grpo_pipeline.config.run_config import RunConfig, resolved_once
from grpo_pipeline.errors import ProjectError, invalid_parameters
from grpo_pipeline.prompts import SOURCE_ATTR, PromptDataError, RawPrompts, normalised_rows, source_tables
from grpo_pipeline.tools import ENVIRONMENT_COLUMN, environment_column_problem


class PreflightError(ProjectError, ValueError):
    """More than one pre-run check failed; the message holds each one's."""


# What GRPOTrainer._calculate_rewards hands every reward besides the dataset's columns (TRL 1.16); ``environments``
# too when the run has environments. The ``prompt`` column reaches a reward only as ``prompts``.
TRAINER_REWARD_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


def _reward_column_problems(config: RunConfig, rows: pd.DataFrame, source: str) -> list[str]:
    """A reward parameter with no default that neither the trainer nor the training rows (``rows``: the columns
    training keeps) give: the reward would fail at its first call, minutes into training."""
    given = {*TRAINER_REWARD_KWARGS, *(["environments"] if config.tools.environments is not None else [])}
    columns = [column for column in rows.columns if column != "prompt"]
    problems = []
    for reward in config.rewards.rewards:
        if reward.function is None or reward.environment is not None:
            continue
        try:
            parameters = inspect.signature(reward.function).parameters.values()
        except (TypeError, ValueError):  # no signature to read (a builtin): TRL will tell at the call
            continue
        for parameter in parameters:
            needed = parameter.default is parameter.empty and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD,
                parameter.KEYWORD_ONLY,
            )
            if needed and parameter.name not in given and parameter.name not in columns:
                problems.append(
                    f"{source}: reward '{reward.name}' takes '{parameter.name}', which training does not give it: "
                    f"no such column in the rows training keeps ({', '.join(columns) or 'none beside the prompt'}). "
                    f"Add the column to every row and to data.required_columns, or give the parameter a default"
                )
    return problems


def _data_problems(config: RunConfig, raw_prompts: tuple[RawPrompts, str]) -> None:
    raw, source = raw_prompts
    checks = config.rewards.column_checks()
    for table in source_tables(raw, config.params.data, source):
        if table is not None:
            rows = normalised_rows(table, config.params.data, checks)
            where = table.attrs.get(SOURCE_ATTR, source)
            if problem := environment_column_problem(rows.get(ENVIRONMENT_COLUMN), config.tools):
                raise PromptDataError(f"{where}: {problem} (run.environment)")
            if problems := _reward_column_problems(config, rows, where):
                raise PromptDataError("\n".join(problems))


def _model_problems(config: RunConfig) -> None:
    if config.params.model.from_gguf is not None:
        from grpo_pipeline.models.gguf import gguf_file  # noqa: PLC0415 (with its package's folder)

        gguf_file(config.params.model.from_gguf, config.where("model.from_gguf"))


def _context_length(config: RunConfig) -> tuple[int, str] | None:
    """How many positions the model takes, and where that is set; None where the model is not at hand (a hub id,
    a model built later) or does not say."""
    model = config.params.model
    if model.build_tiny is not None:
        return model.build_tiny.max_position_embeddings, f"parameter '{config.where('model.build_tiny')}'"
    config_file = Path(model.name_or_path) / "config.json"
    if not config_file.is_file():
        return None
    from transformers import AutoConfig  # noqa: PLC0415 (only a local model's config is read)

    try:
        text_config = AutoConfig.from_pretrained(
            model.name_or_path, trust_remote_code=model.trust_remote_code
        ).get_text_config()
    except (OSError, ValueError):  # a config transformers cannot read: loading the model says why
        return None
    limit = getattr(text_config, "max_position_embeddings", None)
    return (limit, str(config_file)) if isinstance(limit, int) else None


def _length_problems(config: RunConfig) -> None:
    """A prompt and its completion must fit in the model's positions: past them a model with learned positions
    fails at the first step, and one with rotary positions generates from positions it never saw."""
    if (context := _context_length(config)) is None:
        return
    limit, where = context
    prompt, completion = config.params.formatting.max_prompt_length, config.grpo_config.max_completion_length
    if prompt + completion > limit:
        raise invalid_parameters(
            [
                f"parameter '{config.where('formatting.max_prompt_length')}' ({prompt}) + "
                f"'{config.where('training.max_completion_length')}' ({completion}) = {prompt + completion} tokens, "
                f"more than the model's max_position_embeddings = {limit} ({where}); lower one of them"
            ]
        )


def _rollout_problems(config: RunConfig) -> None:
    if config.params.run.rollout_func:
        from grpo_pipeline.training.rollouts import check_rollout_func  # noqa: PLC0415 (imports TRL)

        check_rollout_func(config.params.run, config.where("run"))


def _vllm_problems(config: RunConfig) -> None:
    if config.grpo_config.use_vllm:
        from grpo_pipeline.training.vllm_preflight import check_vllm_generation  # noqa: PLC0415 (imports TRL)

        check_vllm_generation(config.grpo_config, config.params.model.name_or_path, config.variant)


def _resume_problems(config: RunConfig) -> None:
    from grpo_pipeline.training.checkpoints import (  # noqa: PLC0415 (imports transformers)
        is_auto_resume,
        read_marker,
        resolve_resume_checkpoint,
    )
    from grpo_pipeline.training.fingerprint import check_resume, run_fingerprint  # noqa: PLC0415 (same)

    setting = config.params.run.resume_from_checkpoint
    checkpoint = resolve_resume_checkpoint(setting, config.grpo_config.output_dir)
    if checkpoint is not None and is_auto_resume(setting):
        # The formatted data does not exist yet; training compares its hash once it does.
        recorded = read_marker(checkpoint).get("fingerprint")
        check_resume(checkpoint, recorded, run_fingerprint(config), config.where("run"))


def preflight(
    raw_params: dict[str, Any],
    variant: str,
    raw_prompts: tuple[RawPrompts, str] | None = None,
    trains: bool = True,
) -> RunConfig:
    """``variant``'s run configuration once every check passed: its parameters ``raw_params``, the rows of
    ``raw_prompts`` (the table(s) and where they come from) when given, and with ``trains`` what training needs.
    Raises the one failed check's error, or a :class:`PreflightError` holding each failed check's message."""
    config = resolved_once(raw_params, variant)
    checks = [lambda: _model_problems(config)]
    checks += [lambda: _data_problems(config, raw_prompts)] if raw_prompts is not None else []
    if trains:
        checks += [
            lambda: _length_problems(config),
            lambda: _rollout_problems(config),
            lambda: _vllm_problems(config),
            lambda: _resume_problems(config),
        ]
    errors: list[ProjectError] = []
    for check in checks:
        try:
            check()
        except ProjectError as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PreflightError("\n\n".join(str(error) for error in errors))
    return config

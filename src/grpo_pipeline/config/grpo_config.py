"""The ``training`` section is ``trl.GRPOConfig``: every key is checked against GRPOConfig's own fields.

Names (with did-you-mean), types (GRPOConfig's annotations) and choices (enum-typed fields, and the
plain-text fields whose values TRL's help lists) are checked before anything runs, so a field TRL adds
works with no change here. TRL is imported only when a section is checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

# GRPOConfig fields the project fills in itself, and why; setting them under training would be ignored.
SET_BY_PROJECT = {
    "seed": "the project sets GRPOConfig.seed from the variant's `seed`; set it there",
    "data_seed": "the project sets GRPOConfig.data_seed from the variant's `seed`; set it there",
    "reward_weights": "the project sets GRPOConfig.reward_weights from `reward.weights` and each reward model's "
    "`weight`; set them there",
    "save_only_model": "the project sets GRPOConfig.save_only_model to False: resuming a crashed run needs the "
    "optimizer state in every checkpoint",
}

# GRPOConfig fields typed plain `str` (or `str | bool`) that take one of a few values, as TRL 1.16 documents
# them; a value a later TRL documents in the field's help (quoted, e.g. 'dapo') is accepted too.
TEXT_CHOICES: dict[str, tuple[str | bool, ...]] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none", True, False),
    "importance_sampling_level": ("token", "sequence"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
    "vllm_importance_sampling_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),
}


@functools.cache
def grpo_config_fields() -> dict[str, Any]:
    """Every ``trl.GRPOConfig`` field and its annotation."""
    from trl import GRPOConfig  # noqa: PLC0415 (TRL takes seconds to import; only a check needs it)

    hints = typing.get_type_hints(GRPOConfig)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(GRPOConfig) if field.init}


@functools.cache
def documented_values(name: str) -> frozenset[str]:
    """The values quoted in GRPOConfig's help for field ``name`` ('token', `'batch'`)."""
    from trl import GRPOConfig  # noqa: PLC0415 (see grpo_config_fields)

    field = next(field for field in dataclasses.fields(GRPOConfig) if field.name == name)
    return frozenset(re.findall(r"'(\w+)'", field.metadata.get("help", "")))


def _text_choice_problem(name: str, value: Any) -> str | None:
    allowed = TEXT_CHOICES[name]
    if isinstance(value, str | bool) and (value in allowed or value in documented_values(name)):
        return None
    return f"must be one of {list(allowed)}"


def _choices(annotation: Any) -> list[str] | None:
    """The allowed values of an enum-typed field (transformers writes them ``SomeEnum | str``)."""
    members = [arg for arg in typing.get_args(annotation) or (annotation,) if isinstance(arg, type)]
    enum_type = next((arg for arg in members if issubclass(arg, enum.Enum)), None)
    return [str(member.value) for member in enum_type] if enum_type else None


def _type_problem(annotation: Any, value: Any) -> str | None:
    choices = _choices(annotation)
    if choices is not None and isinstance(value, str):
        return None if value in choices else f"must be one of {choices}"
    try:
        TypeAdapter(annotation).validate_python(value, strict=False)
    except ValidationError as error:
        return error.errors()[0]["msg"]
    except Exception:  # an annotation pydantic cannot build a validator for: GRPOConfig itself checks it
        return None
    return None


def grpo_config_problems(values: dict[str, Any], prefix: str, set_elsewhere: Mapping[str, str]) -> list[str]:
    """One line per key of ``values`` that is not a valid ``trl.GRPOConfig`` field value. ``set_elsewhere`` maps
    keys that belong to another section to where to set them."""
    fields = grpo_config_fields()
    refused = {**SET_BY_PROJECT, **set_elsewhere}
    problems = []
    for key, value in values.items():
        where = f"parameter '{prefix}.{key}'"
        if key in refused:
            problems.append(f"{where}: {refused[key]}")
        elif key in fields:
            issue = _text_choice_problem(key, value) if key in TEXT_CHOICES else _type_problem(fields[key], value)
            if issue:
                problems.append(f"{where} = {value!r}: {issue} (trl.GRPOConfig.{key}: {fields[key]})")
        else:
            close = difflib.get_close_matches(key, [*fields, *set_elsewhere], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "it is not a field of trl.GRPOConfig (see TRL's docs)"
            if close and close[0] in set_elsewhere:
                hint += f" ({set_elsewhere[close[0]]})"
            problems.append(f"unknown parameter '{prefix}.{key}': {hint}")
    return problems

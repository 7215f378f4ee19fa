"""The ``training`` section is ``trl.GRPOConfig``: every key is checked against GRPOConfig's own fields.

Names (with did-you-mean), types (GRPOConfig's annotations) and, for enum-typed fields, choices are
checked before anything runs, so a field TRL adds works with no change here. TRL is imported only when
a section is checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

# GRPOConfig fields the project fills in itself, and why; setting them under training would be ignored.
SET_BY_PROJECT = {
    "seed": "from the variant's `seed`; set it there",
    "data_seed": "from the variant's `seed`; set it there",
    "reward_weights": "from `reward.weights` and each reward model's `weight`; set them there",
    "save_only_model": "to False: resuming a crashed run needs the optimizer state in every checkpoint",
}


@functools.cache
def grpo_config_fields() -> dict[str, Any]:
    """Every ``trl.GRPOConfig`` field and its annotation."""
    from trl import GRPOConfig  # noqa: PLC0415 (TRL takes seconds to import; only a check needs it)

    hints = typing.get_type_hints(GRPOConfig)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(GRPOConfig) if field.init}


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


def grpo_config_problems(values: dict[str, Any], prefix: str, project_keys: frozenset[str]) -> list[str]:
    """One line per key of ``values`` that is not a valid ``trl.GRPOConfig`` field value or one of ``project_keys``."""
    fields = grpo_config_fields()
    problems = []
    for key, value in values.items():
        where = f"parameter '{prefix}.{key}'"
        if key in project_keys:
            continue
        if key in SET_BY_PROJECT:
            problems.append(f"{where}: the project sets GRPOConfig.{key} {SET_BY_PROJECT[key]}")
        elif key in fields:
            if issue := _type_problem(fields[key], value):
                problems.append(f"{where} = {value!r}: {issue} (trl.GRPOConfig.{key}: {fields[key]})")
        else:
            close = difflib.get_close_matches(key, [*fields, *project_keys], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "it is not a field of trl.GRPOConfig (see TRL's docs)"
            problems.append(f"unknown parameter '{prefix}.{key}': {hint}")
    return problems

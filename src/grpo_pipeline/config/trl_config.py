"""Sections that are a library's config class (``training`` is ``trl.GRPOConfig``, ``warm_start.sft`` is
``trl.SFTConfig``, ``peft`` is ``peft.LoraConfig``): every key is checked against the config's own dataclass fields.

Names (with did-you-mean), types (the config's annotations) and choices (enum-typed fields, and the
plain-text fields whose help lists their values) are checked against the config class itself, then the
config is built (:func:`build_trl_config`), so its own ``__post_init__`` checks run before anything else
does. Nothing of TRL's or peft's is written down here: a field they add works with no change. The library is
imported only when a section is checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from grpo_pipeline.errors import invalid_parameters

TrlConfig = Literal["GRPOConfig", "SFTConfig", "LoraConfig"]
CONFIG_MODULE: dict[TrlConfig, str] = {"GRPOConfig": "trl", "SFTConfig": "trl", "LoraConfig": "peft"}

# Fields the project fills in itself, and why; setting them in the section would be ignored.
SET_BY_PROJECT: dict[TrlConfig, dict[str, str]] = {
    "GRPOConfig": {
        "seed": "the project sets GRPOConfig.seed from the variant's `seed`; set it there",
        "data_seed": "the project sets GRPOConfig.data_seed from the variant's `seed`; set it there",
        "reward_weights": "the project sets GRPOConfig.reward_weights from `reward.weights` and each reward model's "
        "`weight`; set them there",
        "save_only_model": "the project sets GRPOConfig.save_only_model to False: resuming a crashed run needs the "
        "optimizer state in every checkpoint",
    },
    "SFTConfig": {
        "seed": "the project sets SFTConfig.seed from the variant's `seed`; set it there",
        "data_seed": "the project sets SFTConfig.data_seed from the variant's `seed`; set it there",
        "output_dir": "the warm start trains in a scratch directory and writes its model to warm_start.output_dir; "
        "set that instead",
    },
    "LoraConfig": {
        "task_type": "GRPO trains a causal language model: the project sets peft.LoraConfig.task_type to CAUSAL_LM",
        **{
            name: "peft records it in the adapter's config when it saves one; it is not a setting"
            for name in ("peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision")
        },
        "inference_mode": "the adapters train: peft sets inference_mode when the checkpoint is loaded for validation",
    },
}


@functools.cache
def config_class(config: TrlConfig) -> type:
    # TRL and peft take seconds to import; only a check needs them.
    return getattr(importlib.import_module(CONFIG_MODULE[config]), config)


def qualified(config: TrlConfig) -> str:
    """``config`` as its library names it: "trl.GRPOConfig", "peft.LoraConfig"."""
    return f"{CONFIG_MODULE[config]}.{config}"


@functools.cache
def config_fields(config: TrlConfig) -> dict[str, Any]:
    """Every field of the TRL config class ``config`` and its annotation."""
    cls = config_class(config)
    hints = typing.get_type_hints(cls)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(cls) if field.init}


def _field(config: TrlConfig, name: str) -> dataclasses.Field:
    return next(field for field in dataclasses.fields(config_class(config)) if field.name == name)


def trl_default(config: TrlConfig, name: str) -> Any:
    """The default TRL gives ``config``'s field ``name``."""
    return _field(config, name).default


def trl_values(config: TrlConfig, values: dict[str, Any]) -> Any:
    """``values`` over TRL's defaults, read as ``config``'s attributes, without building the config (whose checks
    look at this machine's devices)."""
    defaults = {field.name: field.default for field in dataclasses.fields(config_class(config)) if field.init}
    return types.SimpleNamespace(**(defaults | values))


def _help(config: TrlConfig, name: str) -> str:
    return _field(config, name).metadata.get("help", "")


# The sentence of a field's help that lists its values ("Supported values are 'grpo', 'dapo', ...").
LISTED_VALUES = re.compile(r"(?:Supported (?:values|options) are|Must be one of|Possible values are|Options:)[^.]*")


@functools.cache
def documented_choices(config: TrlConfig, name: str) -> frozenset[str] | None:
    """The values a plain-text field of ``config`` takes, read from its help: the quoted words ('token', `'batch'`)
    of the sentence that lists them, or of the whole help, when its default is one of them (a field whose help
    lists its choices); None for a field whose help lists none."""
    default, help_text = trl_default(config, name), _help(config, name)
    for text in (*(match.group() for match in LISTED_VALUES.finditer(help_text)), help_text):
        quoted = frozenset(re.findall(r"'(\w+)'", text))
        if isinstance(default, str) and default in quoted and len(quoted) >= 2:
            return quoted
    return None


def _value_problem(config: TrlConfig, name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``config``'s field ``name``, or None."""
    annotation = config_fields(config)[name]
    if str not in (typing.get_args(annotation) or (annotation,)):
        return _type_problem(annotation, value)
    if isinstance(value, bool) and ("`True`" in _help(config, name) or "`False`" in _help(config, name)):
        return None  # a text field whose help documents True/False as values (scale_rewards)
    # Only a field typed plain `str` is a choice (report_to, `str | list[str]`, names integrations its help does not).
    choices = documented_choices(config, name) if annotation is str else None
    if choices is None or not isinstance(value, str):
        return _type_problem(annotation, value)
    return None if value in choices else f"must be one of {sorted(choices)}"


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
    except Exception:  # an annotation pydantic cannot build a validator for: the config itself checks it
        return None
    return None


def config_problems(
    config: TrlConfig, values: dict[str, Any], prefix: str, set_elsewhere: Mapping[str, str] | None = None
) -> list[str]:
    """One line per key of ``values`` that is not a valid value of a ``config`` field. ``set_elsewhere`` maps
    keys that belong to another section to where to set them."""
    fields, set_elsewhere = config_fields(config), set_elsewhere or {}
    refused = {**SET_BY_PROJECT[config], **set_elsewhere}
    problems = []
    for key, value in values.items():
        where = f"parameter '{prefix}.{key}'"
        if key in refused:
            problems.append(f"{where}: {refused[key]}")
        elif key in fields:
            if issue := _value_problem(config, key, value):
                problems.append(f"{where} = {value!r}: {issue} ({qualified(config)}.{key}: {fields[key]})")
        else:
            close = difflib.get_close_matches(key, [*fields, *set_elsewhere], n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"it is not a field of {qualified(config)}"
            if close and close[0] in set_elsewhere:
                hint += f" ({set_elsewhere[close[0]]})"
            problems.append(f"unknown parameter '{prefix}.{key}': {hint}")
    return problems


def build_trl_config(config: TrlConfig, kwargs: dict[str, Any], prefix: str, world_size: int | None = None) -> Any:
    """``trl.<config>(**kwargs)``, whose own ``__post_init__`` checks become a ParameterError naming ``prefix``.

    TRL sizes and checks the generation batch by the number of processes training (``world_size``, from the
    distributed state); with ``world_size`` the config is built as each process of a run launched on that many will
    build it, so batch divisibility is checked here exactly as TRL checks it there.
    """
    cls = config_class(config)
    if world_size is not None and world_size > 1:
        cls = type(cls.__name__, (cls,), {"world_size": property(lambda self: world_size)})
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise invalid_parameters([f"{qualified(config)} rejected '{prefix}': {error}"]) from None


def optimizer_problems(args: Any, prefix: str) -> list[str]:
    """What the trainer's optimizer and learning-rate scheduler refuse of ``args`` (a ``TrainingArguments``: GRPOConfig,
    SFTConfig), found by building them as transformers' ``Trainer`` does, on one stand-in parameter: a negative
    learning rate, a beta outside [0, 1), scheduler kwargs the schedule does not take, a missing optimizer package.
    Otherwise the trainer refuses them at its first step, after the model has loaded and the run opened. An optimizer
    that needs the model itself to be built (GaLore's target modules, LOMO) is left to the trainer."""
    import torch  # noqa: PLC0415 (the training libraries load only when a section is checked)
    from transformers import Trainer  # noqa: PLC0415
    from transformers.optimization import get_scheduler  # noqa: PLC0415

    optim, schedule = (getattr(value, "value", value) for value in (args.optim, args.lr_scheduler_type))
    try:
        optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as error:
        return [f"parameter '{prefix}.optim' = {optim!r}: {error}"]
    except Exception:  # it needs the model: the trainer checks it with one
        return []
    settings = "learning_rate, weight_decay, adam_beta1, adam_beta2, adam_epsilon, optim_args"
    try:
        optimizer = optimizer_class([torch.nn.Parameter(torch.zeros(1))], **optimizer_kwargs)
    except (TypeError, ValueError) as error:
        return [f"parameter '{prefix}': its optimizer ({optim}) refuses its settings ({settings}): {error}"]
    except Exception:  # about the stand-in, not the settings (e.g. a fused kernel for another device)
        return []
    steps = max(args.max_steps, 1)
    try:
        get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=args.get_warmup_steps(steps),
            num_training_steps=steps,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )
    except (TypeError, ValueError) as error:
        return [
            f"parameter '{prefix}.lr_scheduler_kwargs' = {args.lr_scheduler_kwargs!r}: the "
            f"'{schedule}' schedule refuses it: {error}"
        ]
    return []

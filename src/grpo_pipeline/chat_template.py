"""The one place the project applies a tokenizer's chat template, as ``trl.GRPOTrainer`` applies it: prompts for
their length and text, custom rollouts, and the warm start's tool-calling traces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def training_chat_template(tokenizer: Any, tools: bool) -> str | None:
    """The template GRPOTrainer renders turns with (None: the tokenizer's own). With tools, as TRL sets the
    tokenizer up: a response template to parse tool calls with (for the chat templates TRL knows), and a
    prefix-preserving training template where the tokenizer's own is not."""
    if not tools:
        return None
    from trl.chat_template_utils import (  # noqa: PLC0415 (TRL takes seconds to import)
        add_response_schema,
        get_training_chat_template,
        is_chat_template_prefix_preserving,
    )

    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
        add_response_schema(tokenizer)
    return None if is_chat_template_prefix_preserving(tokenizer) else get_training_chat_template(tokenizer)


def render(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[Callable[..., Any]] | None = None,
    chat_template: str | None = None,
    add_generation_prompt: bool = True,
    tokenize: bool = False,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> str | list[int]:
    """``messages`` through the chat template (``chat_template``; None: the tokenizer's own) with the descriptions of
    ``tools``: the text, or with ``tokenize`` its token ids, as GRPOTrainer renders a prompt."""
    rendered = tokenizer.apply_chat_template(
        messages,
        tools=tools or None,  # some templates write tool boilerplate even for an empty list
        chat_template=chat_template,
        add_generation_prompt=add_generation_prompt,
        tokenize=tokenize,
        return_dict=tokenize,
        **(chat_template_kwargs or {}),
    )
    return list(rendered["input_ids"]) if tokenize else rendered

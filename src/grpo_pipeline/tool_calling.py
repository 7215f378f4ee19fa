"""Generation with tools outside the trainer, as ``trl.GRPOTrainer._tool_call_loop`` generates during training.

Tool calls are parsed with the tokenizer's response template, executed (a failure becomes ``{"error": ...}`` for
the model to read), their results appended with the chat template, and generation continues on the concatenated
token ids within the completion budget, up to ``max_tool_calling_iterations`` rounds: validation scores the
checkpoint on what it does when it may call tools, as it trained.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from grpo_pipeline.evaluation import run_coroutines
from grpo_pipeline.tools import ENVIRONMENT_COLUMN, ToolSet, assistant_turns, called_a_tool


def prepare_tokenizer(tokenizer: Any) -> str | None:
    """Set up ``tokenizer`` as GRPOTrainer does for tools: a response template to parse tool calls with (for the
    chat templates TRL knows), and the chat template to render turns with (a prefix-preserving training template
    where the tokenizer's own is not; None: its own)."""
    from trl.chat_template_utils import (  # noqa: PLC0415 (TRL takes seconds to import)
        add_response_schema,
        get_training_chat_template,
        is_chat_template_prefix_preserving,
    )

    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
        add_response_schema(tokenizer)
    return None if is_chat_template_prefix_preserving(tokenizer) else get_training_chat_template(tokenizer)


@dataclass
class Rollout:
    """One multi-turn completion: its messages, its token ids (the model's and the tools' results), the tool calls
    it made and how many of them failed, and the environment it ran in."""

    prompt: list[dict[str, Any]]
    prompt_ids: list[int]
    tools: list[Callable[..., Any]]
    environment: Any = None
    completion: list[dict[str, Any]] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    tool_calls: int = 0
    tool_failures: int = 0


def call_tools(rollout: Rollout, tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Execute one assistant turn's tool calls as TRL does: a failure (raised, unknown tool, unsupported call type)
    becomes ``{"error": ...}`` for the model to read; the tool messages, in call order."""
    by_name = {tool.__name__: tool for tool in rollout.tools}
    results: list[tuple[str, Any] | None] = []
    pending: list[tuple[int, str, Any]] = []
    for call in tool_calls:
        rollout.tool_calls += 1
        if call.get("type") != "function":
            rollout.tool_failures += 1
            results.append((call.get("name", "unknown"), {"error": f"Unsupported tool call type: {call.get('type')}"}))
            continue
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        try:
            if name not in by_name:
                raise ValueError(f"Tool {name} not found.")
            value = by_name[name](**arguments)
        except Exception as error:  # TRL hands any tool failure back to the model
            rollout.tool_failures += 1
            results.append((name, {"error": str(error)}))
            continue
        if inspect.iscoroutine(value):
            pending.append((len(results), name, value))
            results.append(None)
        else:
            results.append((name, value))
    for (index, name, _), value in zip(
        pending, run_coroutines([c for _, _, c in pending], return_exceptions=True), strict=True
    ):
        if isinstance(value, Exception):
            rollout.tool_failures += 1
        results[index] = (name, {"error": str(value)} if isinstance(value, Exception) else value)
    return [
        {"role": "tool", "name": name, "content": value if isinstance(value, list) else str(value)}
        for name, value in (result for result in results if result is not None)
    ]


def tool_suffix_ids(tokenizer: Any, chat_template: str | None, tool_messages: list[dict[str, Any]]) -> list[int]:
    """The tokens the chat template puts after an assistant turn for ``tool_messages`` and the next assistant
    header (``GRPOTrainer._get_tool_suffix_ids``)."""
    calls = [{"type": "function", "function": {"name": tool_messages[0]["name"], "arguments": {}}}]
    dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    kwargs = {"tokenize": True, "chat_template": chat_template, "return_dict": False}
    prefix = list(tokenizer.apply_chat_template(dummy, add_generation_prompt=False, **kwargs))
    full = list(tokenizer.apply_chat_template(dummy + tool_messages, add_generation_prompt=True, **kwargs))
    ends = [index for index, token in enumerate(prefix) if token == tokenizer.eos_token_id]
    if ends:
        prefix = prefix[: ends[-1] + 1]
    if full[: len(prefix)] != prefix:
        raise ValueError("Unexpected tokenization: the EOS-trimmed prefix IDs are not a prefix of the full IDs.")
    return full[len(prefix) :]


@torch.no_grad()
def _continue(
    policy: torch.nn.Module,
    sequences: list[list[int]],
    budgets: list[int],
    pad_token_id: int,
    eos_token_ids: set[int],
    sampling: dict[str, Any] | None,
    batch_size: int,
) -> tuple[list[list[int]], bool]:
    """Each sequence's continuation up to and including its end-of-sequence token, within its token budget, and
    whether every logit was finite."""
    continuations: list[list[int]] = []
    finite = True
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(map(len, batch))
        input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in batch], device=policy.device)
        attention_mask = (
            (
                torch.arange(width).expand(len(batch), width)
                >= torch.tensor([width - len(ids) for ids in batch]).unsqueeze(1)
            )
            .long()
            .to(policy.device)
        )
        output = policy.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max(budgets[start : start + batch_size]),
            **({"do_sample": True, **sampling} if sampling else {"do_sample": False}),
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=pad_token_id,
        )
        finite = finite and all(bool(torch.isfinite(step).all()) for step in output.logits)
        for row, budget in zip(output.sequences[:, width:].tolist(), budgets[start : start + batch_size], strict=True):
            end = next((index + 1 for index, token in enumerate(row) if token in eos_token_ids), len(row))
            continuations.append(row[: min(end, budget)])
    return continuations, finite


def tool_rollouts(
    policy: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[dict[str, Any]]],
    rows: list[dict[str, Any]],
    tool_set: ToolSet,
    max_new_tokens: int,
    max_iterations: int | None,
    sampling: dict[str, Any] | None = None,
    batch_size: int = 32,
) -> tuple[list[Rollout], bool]:
    """One multi-turn rollout per prompt (``rows``: its dataset row, for ``reset``), greedy or with ``sampling``, as
    GRPOTrainer generates with tools; whether every logit was finite."""
    from trl.chat_template_utils import parse_response  # noqa: PLC0415 (TRL takes seconds to import)

    policy.eval()
    chat_template = prepare_tokenizer(tokenizer)
    eos_token_ids = {tokenizer.eos_token_id, *np.atleast_1d(policy.generation_config.eos_token_id or []).tolist()}
    max_length = policy.config.get_text_config().max_position_embeddings
    rollouts = []
    for messages, row in zip(prompts, rows, strict=True):
        environment, tools = tool_set.new_environment(row)
        prompt = messages
        if environment is not None:
            reset_row = {k: v for k, v in row.items() if k != ENVIRONMENT_COLUMN} if tool_set.multi_environment else row
            observation = environment.reset(**reset_row)
            if isinstance(observation, str):  # TRL appends the environment's opening text to the last user message
                prompt = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + observation}]
        prompt_ids = list(
            tokenizer.apply_chat_template(
                prompt,
                tools=tools or None,
                chat_template=chat_template,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        rollouts.append(Rollout(prompt, prompt_ids, tools, environment))

    pad = tokenizer.pad_token_id
    first, finite = _continue(
        policy,
        [r.prompt_ids for r in rollouts],
        [max_new_tokens] * len(rollouts),
        pad,
        eos_token_ids,
        sampling,
        batch_size,
    )
    active = []
    for rollout, ids in zip(rollouts, first, strict=True):
        rollout.completion_ids = ids
        rollout.completion = [parse_response(tokenizer, ids, prefix=rollout.prompt_ids, tools=rollout.tools)]
        if rollout.completion[0].get("tool_calls"):
            active.append(rollout)
    iteration = 0
    while active and (max_iterations is None or iteration < max_iterations):
        contexts = []
        for rollout in list(active):
            tool_messages = call_tools(rollout, rollout.completion[-1]["tool_calls"])
            context = (
                rollout.prompt_ids + rollout.completion_ids + tool_suffix_ids(tokenizer, chat_template, tool_messages)
            )
            # A tool result that would overrun the completion budget or the model's length is dropped: the rollout
            # ends with its completion as it is (TRL does the same).
            if len(context) - len(rollout.prompt_ids) > max_new_tokens or len(context) >= max_length:
                active.remove(rollout)
                continue
            rollout.completion += tool_messages
            contexts.append(context)
        if not active:
            break
        budgets = [max_new_tokens - (len(c) - len(r.prompt_ids)) for c, r in zip(contexts, active, strict=True)]
        continuations, continued_finite = _continue(
            policy, contexts, [max(b, 1) for b in budgets], pad, eos_token_ids, sampling, batch_size
        )
        finite = finite and continued_finite
        still = []
        for rollout, context, continuation, budget in zip(active, contexts, continuations, budgets, strict=True):
            ids = continuation[: max(budget, 0)]
            rollout.completion_ids = context[len(rollout.prompt_ids) :] + ids
            if ids:
                reply = parse_response(tokenizer, ids, prefix=context, tools=rollout.tools)
                rollout.completion.append(reply)
                if reply.get("tool_calls"):
                    still.append(rollout)
        active = still
        iteration += 1
    return rollouts, finite


def tool_usage(rollouts: list[Rollout]) -> dict[str, float]:
    """How rollouts used their tools: calls per completion, the share of calls that failed, the share of
    completions with at least one call, and assistant turns per completion."""
    calls = sum(rollout.tool_calls for rollout in rollouts)
    return {
        "tool_calls_per_completion": float(np.mean([rollout.tool_calls for rollout in rollouts])) if rollouts else 0.0,
        "tool_failure_rate": sum(rollout.tool_failures for rollout in rollouts) / calls if calls else 0.0,
        "tool_use_share": float(np.mean([called_a_tool(r.completion) for r in rollouts])) if rollouts else 0.0,
        "turns_per_completion": float(np.mean([len(assistant_turns(r.completion)) for r in rollouts]))
        if rollouts
        else 0.0,
    }

"""Generation with tools outside the trainer, as ``trl.GRPOTrainer._tool_call_loop`` generates during training.

Tool calls are parsed with the tokenizer's response template, executed (a failure becomes ``{"error": ...}`` for
the model to read), their results appended with the chat template, and generation continues on the concatenated
token ids within the completion budget, up to ``max_tool_calling_iterations`` rounds: validation scores the
checkpoint on what it does when it may call tools, as it trained.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import GenerationMixin

from grpo_pipeline.evaluation import SAMPLING_FIELDS, run_coroutines
from grpo_pipeline.tools import ENVIRONMENT_COLUMN, ToolSet, assistant_turns, called_a_tool

# transformers 5 renamed generate's and the models' ``past_key_values`` to ``cache`` (the old name is deprecated).
CACHE_KWARG = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)


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


# Below this many shared leading tokens, computing them once is not worth a forward pass of its own.
MIN_SHARED_PREFIX = 32
# Rows that have ended leave their batch every this many tokens, so that the others go on without them.
CHUNK_TOKENS = 8
# At most this much memory holds ended rows' keys and values for their next turn; past it a row's next turn reads
# its context again.
ROW_CACHE_BYTES = 2 * 1024**3


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each at least one token of its own to start from."""
    first, shortest = sequences[0], min(map(len, sequences))
    length = 0
    while length < shortest - 1 and all(ids[length] == first[length] for ids in sequences):
        length += 1
    return length


@torch.no_grad()
def _plain_attention_cache(policy: torch.nn.Module, ids: list[int]) -> Any | None:
    """The key/value cache of ``ids`` when every layer of the model is plain attention (a transformers
    ``DynamicCache`` of ``DynamicLayer``s), whose rows can be padded in the middle, selected and continued; None for
    any other model (sliding windows, convolutions, state spaces), which generates each batch in one call."""
    from transformers import DynamicCache  # noqa: PLC0415 (transformers' cache module, only here)
    from transformers.cache_utils import DynamicLayer  # noqa: PLC0415

    cache = getattr(policy(input_ids=torch.tensor([ids], device=policy.device), use_cache=True), CACHE_KWARG, None)
    plain = type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)
    return cache if plain else None


@dataclass
class SharedPrefix:
    """The leading tokens every rollout of a call shares (the system turn with the tools' descriptions), read once:
    their cache, None where the model is not plain attention or they are too few; and whether batches generate a
    chunk at a time (rows leaving as they end), which the per-token sampling settings allow."""

    ids: list[int]
    cache: Any | None
    chunked: bool

    @classmethod
    def of(cls, policy: torch.nn.Module, sequences: list[list[int]], sampling: dict[str, Any] | None) -> SharedPrefix:
        shared = shared_prefix_length(sequences)
        cache = _plain_attention_cache(policy, sequences[0][: max(shared, 1)])
        chunked = cache is not None and set(sampling or {}) <= set(SAMPLING_FIELDS)
        if cache is None or shared < MIN_SHARED_PREFIX:
            return cls([], None, chunked)
        return cls(sequences[0][:shared], cache, chunked)

    def starts(self, sequences: list[list[int]]) -> bool:
        return all(ids[: len(self.ids)] == self.ids and len(ids) > len(self.ids) for ids in sequences)


@dataclass
class RowCache:
    """One sequence's keys and values past the shared prefix (per layer, ``[heads, tokens, head_dim]``), for its first
    ``covered`` tokens (the prefix included): a later turn extending the sequence reads only the tokens after them."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    covered: int

    @property
    def bytes(self) -> int:
        return sum(keys.nbytes + values.nbytes for keys, values in self.layers)


def _row_cache(cache: Any, index: int, columns: torch.Tensor, shared: int, covered: int) -> RowCache:
    """Row ``index`` of a batch's ``cache``: its tokens sit in ``columns`` (the unmasked ones, in order)."""
    own = columns[shared:covered]
    return RowCache(
        [
            (layer.keys[index].index_select(-2, own), layer.values[index].index_select(-2, own))
            for layer in cache.layers
        ],
        covered,
    )


def _padded_rows(caches: list[RowCache | None], layer: int, width: int, part: int) -> torch.Tensor:
    """``[rows, heads, width, head_dim]``: each row's cached keys (``part`` 0) or values (1) of ``layer``, left-padded
    (masked) to ``width``; a row without a cache all padding."""
    template = next(cache for cache in caches if cache is not None).layers[layer][part]
    heads, _, head_dim = template.shape
    return torch.stack(
        [
            torch.nn.functional.pad(cache.layers[layer][part], (0, 0, width - cache.layers[layer][part].shape[1], 0))
            if cache is not None
            else template.new_zeros(heads, width, head_dim)
            for cache in caches
        ]
    )


@torch.no_grad()
def _continue(
    policy: torch.nn.Module,
    sequences: list[list[int]],
    budgets: list[int],
    pad_token_id: int,
    eos_token_ids: set[int],
    sampling: dict[str, Any] | None,
    batch_size: int,
    prefix: SharedPrefix | None = None,
    row_caches: list[RowCache | None] | None = None,
) -> tuple[list[list[int]], bool, list[RowCache | None]]:
    """Each sequence's continuation up to and including its end-of-sequence token, within its token budget, whether
    every logit was finite, and each ended row's cache for a later turn (None where there is none).

    On a model of plain attention layers, the leading tokens every sequence shares (``prefix``: the system turn with
    the tools' descriptions, most of a tool-calling context) are read once and their cache reused by every batch,
    each row padded between that prefix and its own tokens, masked, so every token keeps the position it has alone; a
    batch generates CHUNK_TOKENS at a time, the rows that have ended leaving it, so that a short reply does not wait
    for the longest one; and a row that ended keeps its cache, so that the next turn (``row_caches``: the same
    sequence with the tool's result appended) reads only its new tokens. A greedy token is the one it would be in one
    uninterrupted call; sampling settings beyond the per-token ones (``SAMPLING_FIELDS``) keep the single call."""
    if prefix is None or not prefix.starts(sequences):
        prefix, row_caches = SharedPrefix.of(policy, sequences, sampling), None
    shared, keep = len(prefix.ids), prefix.cache is not None and prefix.chunked
    row_caches = row_caches if row_caches is not None and keep else [None] * len(sequences)
    continuations: list[list[int]] = [[] for _ in sequences]
    ended_caches: list[RowCache | None] = [None] * len(sequences)
    kept_bytes, finite = 0, True
    for start in range(0, len(sequences), batch_size):
        rows = list(range(start, min(start + batch_size, len(sequences))))
        cached = [row_caches[row].covered - shared if row_caches[row] else 0 for row in rows]
        fresh = [len(sequences[row]) - shared - count for row, count in zip(rows, cached, strict=True)]
        cached_width, fresh_width = max(cached), max(fresh)
        layout = [
            (sequences[row], cached_width - count, count, fresh_width - new)
            for row, count, new in zip(rows, cached, fresh, strict=True)
        ]
        input_ids = torch.tensor(
            [
                ids[:shared]
                + [pad_token_id] * pad
                + ids[shared : shared + count]
                + [pad_token_id] * gap
                + ids[shared + count :]
                for ids, pad, count, gap in layout
            ],
            device=policy.device,
        )
        attention_mask = torch.tensor(
            [
                [1] * shared + [0] * pad + [1] * count + [0] * gap + [1] * (len(ids) - shared - count)
                for ids, pad, count, gap in layout
            ],
            device=policy.device,
        )
        batch_cache = None
        if prefix.cache is not None:
            batch_cache = copy.deepcopy(prefix.cache)
            batch_cache.batch_repeat_interleave(len(rows))
            if cached_width:
                caches = [row_caches[row] for row in rows]
                for index, layer in enumerate(batch_cache.layers):
                    layer.keys = torch.cat([layer.keys, _padded_rows(caches, index, cached_width, 0)], dim=-2)
                    layer.values = torch.cat([layer.values, _padded_rows(caches, index, cached_width, 1)], dim=-2)
        while rows:
            remaining = max(budgets[row] - len(continuations[row]) for row in rows)
            output = policy.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=min(remaining, CHUNK_TOKENS) if prefix.chunked else remaining,
                **({"do_sample": True, **sampling} if sampling else {"do_sample": False}),
                **({CACHE_KWARG: batch_cache} if batch_cache is not None else {}),
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad_token_id,
            )
            finite = finite and all(bool(torch.isfinite(step).all()) for step in output.logits)
            generated = output.sequences[:, input_ids.shape[1] :]
            batch_cache = getattr(output, CACHE_KWARG) if prefix.chunked else None
            going = []
            for index, (row, tokens) in enumerate(zip(rows, generated.tolist(), strict=True)):
                ended = False
                for token in tokens:
                    continuations[row].append(token)
                    if token in eos_token_ids or len(continuations[row]) >= budgets[row]:
                        ended = True
                        break
                if not ended:
                    going.append(index)
                elif keep and kept_bytes < ROW_CACHE_BYTES:
                    # All but the row's last token is in the cache; the next turn starts from that token.
                    columns = torch.cat(
                        [
                            attention_mask[index].nonzero().flatten(),
                            torch.arange(input_ids.shape[1], output.sequences.shape[1], device=policy.device),
                        ]
                    )
                    covered = len(sequences[row]) + len(continuations[row]) - 1
                    ended_caches[row] = _row_cache(batch_cache, index, columns, shared, covered)
                    kept_bytes += ended_caches[row].bytes
            if not prefix.chunked or not going:
                break
            # The rows still going continue from their cache: all but the last token generated is in it.
            keep_rows = torch.tensor(going, device=policy.device)
            batch_cache.batch_select_indices(keep_rows)
            input_ids = output.sequences[keep_rows]
            attention_mask = torch.cat([attention_mask[keep_rows], torch.ones_like(generated[keep_rows])], dim=1)
            rows = [rows[index] for index in going]
    return continuations, finite, ended_caches


def tool_rollouts(
    policy: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[dict[str, Any]]],
    rows: list[dict[str, Any]],
    tool_set: ToolSet,
    max_new_tokens: int,
    max_iterations: int | None,
    sampling: dict[str, Any] | None = None,
    batch_size: int = 128,
) -> tuple[list[Rollout], bool]:
    """One multi-turn rollout per prompt (``rows``: its dataset row, for ``reset``), greedy or with ``sampling``, as
    GRPOTrainer generates with tools; whether every logit was finite. ``batch_size`` rows generate together: with
    rows leaving as they end, a large batch costs little for the short ones (measured on SmolLM2-135M, 2 CPU cores:
    the nudged model's 200 greedy rollouts took 161 s in batches of 32 without the shared prefix or leaving, 45 s
    in batches of 128 with both)."""
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
    prompt_ids = [r.prompt_ids for r in rollouts]
    prefix = SharedPrefix.of(policy, prompt_ids, sampling)
    first, finite, first_caches = _continue(
        policy, prompt_ids, [max_new_tokens] * len(rollouts), pad, eos_token_ids, sampling, batch_size, prefix
    )
    active, row_caches = [], {}
    for rollout, ids, row_cache in zip(rollouts, first, first_caches, strict=True):
        rollout.completion_ids = ids
        rollout.completion = [parse_response(tokenizer, ids, prefix=rollout.prompt_ids, tools=rollout.tools)]
        if rollout.completion[0].get("tool_calls"):
            active.append(rollout)
            row_caches[id(rollout)] = row_cache
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
        continuations, continued_finite, caches = _continue(
            policy,
            contexts,
            [max(b, 1) for b in budgets],
            pad,
            eos_token_ids,
            sampling,
            batch_size,
            prefix,
            [row_caches.pop(id(rollout)) for rollout in active],
        )
        finite = finite and continued_finite
        still = []
        for rollout, context, continuation, budget, row_cache in zip(
            active, contexts, continuations, budgets, caches, strict=True
        ):
            ids = continuation[: max(budget, 0)]
            rollout.completion_ids = context[len(rollout.prompt_ids) :] + ids
            if ids:
                reply = parse_response(tokenizer, ids, prefix=context, tools=rollout.tools)
                rollout.completion.append(reply)
                if reply.get("tool_calls"):
                    still.append(rollout)
                    row_caches[id(rollout)] = row_cache if len(ids) == len(continuation) else None
        active, row_caches = still, {key: row_caches[key] for key in map(id, still)}
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

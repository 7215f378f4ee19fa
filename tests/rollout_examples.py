"""Rollout functions the rollout tests name by import path, as a user's own module would hold them."""

from __future__ import annotations

import re
from typing import Any

from transformers import PreTrainedTokenizerBase
from trl import GRPOConfig

SEEN: dict[str, list[Any]] = {"prompts": [], "args": [], "processing_class": []}


def scripted_answers(prompts: list[str], args: GRPOConfig, processing_class: PreTrainedTokenizerBase) -> dict[str, Any]:
    """A seed-style rollout (``fn(prompts, args, processing_class)``) that answers from a script, not a model.

    Such rollouts stood in for environments or external samplers: completions that are right for some
    prompts and wrong for others give every group a reward spread to learn from.
    """
    SEEN["prompts"].extend(prompts)
    SEEN["args"].append(args)
    SEEN["processing_class"].append(processing_class)
    prompt_ids, completion_ids, logprobs, answers = [], [], [], []
    for index, prompt in enumerate(prompts):
        left, right = map(int, re.findall(r"(\d+) \+ (\d+)", prompt)[-1])
        answer = str(left + right + index % 2)  # every other completion is off by one
        ids = processing_class(answer, add_special_tokens=False)["input_ids"] + [processing_class.eos_token_id]
        prompt_ids.append(processing_class(prompt, add_special_tokens=False)["input_ids"])
        completion_ids.append(ids[: args.max_completion_length])
        logprobs.append([0.0] * len(completion_ids[-1]))
        answers.append(answer)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs, "scripted": answers}


def wrong_arity(prompts: list[Any]) -> dict[str, Any]:
    return {}


NOT_A_FUNCTION = 3

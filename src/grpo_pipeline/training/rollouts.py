"""Custom rollouts for ``trl.GRPOTrainer(rollout_func=...)`` (TRL 1.16's contract).

TRL 1.16 calls ``rollout_func(prompts, trainer)`` instead of its own generation whenever one is given,
with or without vLLM and in both vLLM modes (``GRPOTrainer._generate``). ``prompts`` is this process's
slice of the generation batch as the dataset holds it: chat messages are *not* templated, and each
prompt already appears ``num_generations`` times in a row (TRL's sampler repeats it), so a rollout
returns one completion per entry. Required keys: ``prompt_ids``, ``completion_ids``, ``logprobs`` (one
list per entry); every other key is handed to the reward functions as a keyword argument.

The PPO-era seed used a three-argument form ``fn(prompts, args, processing_class)`` fed already templated
text; :func:`adapt_seed_rollout` wraps such a function so it keeps working.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedTokenizerBase
from trl.data_utils import is_conversational
from trl.models import unwrap_model_for_generation

from grpo_pipeline.chat_template import render
from grpo_pipeline.config.schema import RunParams, invalid_parameters
from grpo_pipeline.imports import import_object

if TYPE_CHECKING:
    from trl import GRPOConfig, GRPOTrainer

RolloutOutput = dict[str, Any]
RolloutFunc = Callable[[list[Any], "GRPOTrainer"], RolloutOutput]
SeedRolloutFunc = Callable[[list[str], "GRPOConfig", PreTrainedTokenizerBase], RolloutOutput]


def _rendered(prompts: list[Any], trainer: GRPOTrainer, tokenize: bool) -> list[Any]:
    return [
        render(
            trainer.processing_class,
            prompt,
            chat_template=trainer.chat_template,
            tokenize=tokenize,
            chat_template_kwargs=trainer.chat_template_kwargs,
        )
        for prompt in prompts
    ]


def templated_prompts(prompts: list[Any], trainer: GRPOTrainer) -> list[str]:
    """The prompts as the model reads them: chat messages through the trainer's chat template."""
    if not is_conversational({"prompt": prompts[0]}):
        return list(prompts)
    return _rendered(prompts, trainer, tokenize=False)


def prompt_token_ids(prompts: list[Any], trainer: GRPOTrainer) -> list[list[int]]:
    """Token ids of each prompt, tokenized the way GRPOTrainer tokenizes them itself."""
    if not is_conversational({"prompt": prompts[0]}):
        return trainer.processing_class(text=prompts)["input_ids"]
    return _rendered(prompts, trainer, tokenize=True)


def _until_eos(tokens: list[int], eos_token_ids: set[int]) -> list[int]:
    """The completion up to and including its first end-of-sequence token (the rest is padding)."""
    for index, token in enumerate(tokens):
        if token in eos_token_ids:
            return tokens[: index + 1]
    return tokens


def _sample_with_generate(
    prompt_ids: list[list[int]], trainer: GRPOTrainer
) -> tuple[list[list[int]], list[list[float]]]:
    """One sampled completion per prompt from the policy's own ``generate``, with each token's log-probability.

    Sampling uses the trainer's generation config (temperature, top-k/p, EOS ids), as TRL's own path
    does. Log-probabilities come from the processed scores, i.e. the distribution the tokens were
    actually drawn from, like vLLM's ``processed_logprobs``.
    """
    device = trainer.accelerator.device
    width = max(len(ids) for ids in prompt_ids)
    pad_id = trainer.generation_config.pad_token_id
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device)
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            generation_kwargs=trainer.generation_kwargs,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
    ):
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=trainer.generation_config,
            output_scores=True,
            return_dict_in_generate=True,
        )
    generated = output.sequences[:, width:]
    token_logprobs = torch.stack(
        [
            torch.log_softmax(scores.float(), dim=-1).gather(1, generated[:, step : step + 1]).squeeze(1)
            for step, scores in enumerate(output.scores)
        ],
        dim=1,
    )
    eos_token_ids = set(trainer.eos_token_ids)
    completion_ids = [_until_eos(row, eos_token_ids) for row in generated.tolist()]
    logprobs = [row[: len(ids)] for row, ids in zip(token_logprobs.tolist(), completion_ids, strict=True)]
    return completion_ids, logprobs


def generate_rollout(prompts: list[Any], trainer: GRPOTrainer) -> RolloutOutput:
    """The project's rollout: template and tokenize, then sample with vLLM when configured, else ``generate``.

    With ``use_vllm`` it goes through the trainer's own vLLM backend (the ``trl vllm-serve`` server in
    server mode, the in-process engine in colocate mode); TRL pushes the current weights to it before
    each call. Extra keys for the rewards: ``rollout_backend`` and ``truncated`` (the completion hit
    ``max_completion_length`` without an end-of-sequence token).
    """
    prompt_ids = prompt_token_ids(prompts, trainer)
    if trainer.use_vllm:
        num_generations = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        # TRL's backend takes the batch with its repeated prompts and samples num_generations per distinct prompt.
        _, completion_ids, top_logprobs, _ = trainer.vllm_generation.generate(
            prompts=prompt_ids, images=None, num_generations=num_generations, profiler=nullcontext()
        )
        logprobs = [[token[0] for token in sequence] for sequence in top_logprobs]
        backend = f"vllm-{trainer.vllm_mode}"
    else:
        completion_ids, logprobs = _sample_with_generate(prompt_ids, trainer)
        backend = "transformers"
    eos_token_ids = set(trainer.eos_token_ids)
    return {
        "prompt_ids": prompt_ids,
        "completion_ids": completion_ids,
        "logprobs": logprobs,
        "rollout_backend": [backend] * len(completion_ids),
        "truncated": [not ids or ids[-1] not in eos_token_ids for ids in completion_ids],
    }


def adapt_seed_rollout(function: SeedRolloutFunc) -> RolloutFunc:
    """Wrap a seed-style ``fn(prompts, args, processing_class)`` as a TRL 1.16 ``rollout_func(prompts, trainer)``.

    The old form received templated text, so the wrapper applies the chat template first, then passes
    the trainer's ``GRPOConfig`` and tokenizer.
    """

    def rollout(prompts: list[Any], trainer: GRPOTrainer) -> RolloutOutput:
        return function(templated_prompts(prompts, trainer), trainer.args, trainer.processing_class)

    rollout.__name__ = rollout.__qualname__ = f"seed_rollout[{getattr(function, '__name__', 'rollout')}]"
    return rollout


def _required_positional(function: Callable[..., Any]) -> int:
    parameters = inspect.signature(function).parameters.values()
    return sum(
        1
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        and parameter.default is parameter.empty
    )


def load_rollout_func(import_path: str) -> RolloutFunc:
    """The rollout at ``package.module:function`` (or ``package.module.function``), adapted if seed-style.

    Two required positional parameters: TRL 1.16's ``(prompts, trainer)``; three: the seed's
    ``(prompts, args, processing_class)``, wrapped by :func:`adapt_seed_rollout`.
    """
    function = import_object(import_path, "rollout_func", "grpo_pipeline.training.rollouts:generate_rollout")
    if not callable(function):
        raise ValueError(f"rollout_func '{import_path}' is a {type(function).__name__}, not a function")
    arity = _required_positional(function)
    if arity == 2:
        return function
    if arity == 3:
        return adapt_seed_rollout(function)
    raise ValueError(
        f"rollout_func '{import_path}' takes {arity} required positional arguments; TRL 1.16 rollouts take "
        "(prompts, trainer) and seed-style ones (prompts, args, processing_class)"
    )


def check_rollout_func(run: RunParams, prefix: str = "run") -> None:
    """Resolve ``run.rollout_func`` before anything runs; a bad one is a :class:`ParameterError` naming it."""
    if run.rollout_func is None:
        return
    try:
        load_rollout_func(run.rollout_func)
    except ValueError as error:
        raise invalid_parameters([f"parameter '{prefix}.rollout_func' = {run.rollout_func!r}: {error}"]) from None

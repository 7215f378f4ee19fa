"""Reward models: sequence-classification models whose single logit scores a prompt and its completion.

Training hands them to ``GRPOTrainer`` as ``reward_funcs`` entries with their tokenizers as
``reward_processing_classes``, and TRL scores with them. Validation scores with the same models through
:class:`RewardModelScorer`, which builds its inputs as TRL 1.16 does (``GRPOTrainer._calculate_rewards``):
the chat template over prompt + completion for conversational prompts, plain concatenation otherwise,
right padding, no added special tokens, the first logit.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import apply_chat_template, is_conversational

from grpo_pipeline.config.schema import RewardModelParams


def load_reward_model(params: RewardModelParams) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (safetensors only, one label, in eval mode) and its tokenizer, padding as TRL sets it up."""
    path = params.name_or_path.rstrip("/")
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=1,
        revision=params.revision,
        trust_remote_code=params.trust_remote_code,
        use_safetensors=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        params.tokenizer or path,
        revision=None if params.tokenizer else params.revision,
        trust_remote_code=params.trust_remote_code,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The score is read at the last non-padding token, which the model finds through its pad token id.
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


class RewardModelScorer:
    """A loaded reward model called like a reward function: ``scorer(prompts=..., completions=...)``."""

    def __init__(self, label: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.__name__ = label
        self.model = model
        self.tokenizer = tokenizer

    @torch.inference_mode()
    def __call__(self, prompts: list[Any], completions: list[Any], batch_size: int = 32, **kwargs: Any) -> list[float]:
        if is_conversational({"prompt": prompts[0]}):
            texts = [
                apply_chat_template({"messages": prompt + completion}, self.tokenizer)["text"]
                for prompt, completion in zip(prompts, completions, strict=True)
            ]
        else:
            texts = [prompt + completion for prompt, completion in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            inputs = self.tokenizer(
                text=texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                padding_side="right",
                add_special_tokens=False,
            ).to(self.model.device)
            scores += self.model(**inputs).logits[:, 0].float().tolist()
        return scores


def reward_model_scorers(models: list[RewardModelParams]) -> list[RewardModelScorer]:
    return [RewardModelScorer(params.label, *load_reward_model(params)) for params in models]

"""A tiny chat model built from a config: random weights and a character-level tokenizer with a chat template.

It is saved as an ordinary Hugging Face directory so that the pipeline loads it through the same
``from_pretrained`` path as a hub model, and it needs no network at any point.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from grpo_pipeline.config.schema import ModelParams, TinyModelParams
from grpo_pipeline.fingerprinted import ensure_artifact

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<unk>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
ALPHABET = string.digits + string.ascii_letters + string.punctuation + " "
FINGERPRINT_FILE = "tiny_model_fingerprint.json"


def fingerprint(spec: TinyModelParams) -> dict[str, Any]:
    """What a build depends on: the architecture, the tokenizer's alphabet and the chat template."""
    return {"spec": spec.model_dump(), "alphabet": ALPHABET, "template": CHAT_TEMPLATE}


def build_tokenizer(vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per printable ASCII character, plus chat special tokens.

    ``vocab_size`` pads the vocabulary with reserved tokens, for a model whose embedding table must
    match a real architecture's size.
    """
    tokens = SPECIAL_TOKENS + list(ALPHABET)
    if vocab_size is not None:
        if vocab_size < len(tokens):
            raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(tokens)} tokens the tokenizer needs")
        tokens += [f"<|reserved_{index}|>" for index in range(vocab_size - len(tokens))]
    vocab = {token: index for index, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=TinyModelParams().max_position_embeddings,
        padding_side="left",
    )


def build_tiny_model(spec: TinyModelParams) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = spec.max_position_embeddings
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def ensure_tiny_model(directory: str | Path, spec: TinyModelParams) -> Path:
    """Build the tiny model into ``directory`` unless an identical build is already there; return the path.

    The directory is written atomically, so an interrupted build never leaves a half-saved model behind.
    """

    def build(staging: Path) -> None:
        model, tokenizer = build_tiny_model(spec)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    ensure_artifact(directory, FINGERPRINT_FILE, fingerprint(spec), build)
    return Path(directory)


def ensure_base_model(model: ModelParams) -> str:
    """Where the base model is: built here when ``model.build_tiny`` is set, otherwise the hub id or path."""
    if model.build_tiny is None:
        return model.name_or_path
    return str(ensure_tiny_model(model.name_or_path, model.build_tiny))

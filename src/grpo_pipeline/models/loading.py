"""Loading a causal LM and its tokenizer from a hub id or a local directory, the same way for both."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def load_tokenizer(
    name_or_path: str | Path, revision: str | None = None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.chat_template is None:
        raise ValueError(
            f"The tokenizer of '{name_or_path}' has no chat template. Use an instruct/chat model, or set "
            "model.build_tiny to let the project build its tiny chat model."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str | Path,
    revision: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Safetensors weights only: a checkpoint that ships only pickled ``.bin`` weights is refused."""
    return AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        revision=revision,
        dtype=DTYPES[dtype],
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
    )

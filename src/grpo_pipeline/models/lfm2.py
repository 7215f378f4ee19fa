"""A randomly initialised model with the public LFM2-350M architecture, for benchmarks without a hub.

The values are those of ``LiquidAI/LFM2-350M``'s ``config.json``: 16 layers (10 gated short
convolutions, 6 grouped-query attention), hidden size 1024, a 65,536-token vocabulary and tied
embeddings, about 354M parameters. Timing and memory depend on the architecture, not on the weights,
so a random model times a GRPO step like the real one (except that it rarely stops before
``max_completion_length``, the slowest case).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Lfm2Config, Lfm2ForCausalLM

from grpo_pipeline.atomic import atomic_directory
from grpo_pipeline.models.tiny import build_tokenizer

LFM2_350M_CONFIG = {
    "vocab_size": 65536,
    "hidden_size": 1024,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "intermediate_size": 6656,
    "block_auto_adjust_ff_dim": True,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "conv_L_cache": 3,
    "conv_bias": False,
    "max_position_embeddings": 128000,
    "norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "layer_types": [
        "conv",
        "conv",
        "full_attention",
        "conv",
        "conv",
        "full_attention",
        "conv",
        "conv",
        "full_attention",
        "conv",
        "full_attention",
        "conv",
        "full_attention",
        "conv",
        "full_attention",
        "conv",
    ],
}


def ensure_random_lfm2_350m(directory: str | Path, seed: int = 0) -> Path:
    """Write a random LFM2-350M-architecture model with a chat tokenizer to ``directory`` (once)."""
    directory = Path(directory)
    if (directory / "model.safetensors").is_file():
        return directory
    tokenizer = build_tokenizer(vocab_size=LFM2_350M_CONFIG["vocab_size"])
    config = Lfm2Config(
        **LFM2_350M_CONFIG,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Lfm2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return directory

"""A tiny reward model the tests build: a Llama sequence classifier trained in seconds to prefer short answers."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from grpo_pipeline.models.tiny import build_tokenizer

MAX_ANSWER_CHARS = 8


def short_answer_target(answer: str) -> float:
    """What the model learns to predict: 1.0 for a one-character answer down to 0.0 at MAX_ANSWER_CHARS."""
    return 1.0 - (min(len(answer), MAX_ANSWER_CHARS) - 1) / (MAX_ANSWER_CHARS - 1)


def build_short_answer_reward_model(directory: Path, steps: int = 150, seed: int = 0) -> Path:
    """Train a 1-layer classifier on chat texts 'question + answer of 1..8 characters' to score short answers high."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = build_tokenizer()
    tokenizer.padding_side = "right"
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    characters = "0123456789 +-abcxyz"
    for _ in range(steps):
        answers = ["".join(rng.choices(characters, k=rng.randint(1, MAX_ANSWER_CHARS))) for _ in range(32)]
        texts = [
            tokenizer.apply_chat_template(
                [
                    {"role": "user", "content": f"What is {rng.randint(0, 9)} + {rng.randint(0, 9)}?"},
                    {"role": "assistant", "content": answer},
                ],
                tokenize=False,
            )
            for answer in answers
        ]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        targets = torch.tensor([short_answer_target(answer) for answer in answers])
        loss = torch.nn.functional.mse_loss(model(**inputs).logits[:, 0], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory

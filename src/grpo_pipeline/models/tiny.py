"""A tiny chat model built from a config: random weights and a character-level tokenizer with a chat template.

It is saved as an ordinary Hugging Face directory so that the pipeline loads it through the same
``from_pretrained`` path as a hub model, and it needs no network at any point.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import torch
import trl
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from grpo_pipeline.config.schema import TinyModelParams
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
# The end of a turn in the chat templates TRL ships that the tiny model can be built with (TinyModelParams): TRL
# recognises those templates (tool-call parsing, training templates) by their exact text.
TRL_TEMPLATE_EOS = "<|im_end|>"
TEMPLATE_TOKEN = re.compile(r"<\|\w+\|>")  # a special token as chat templates write one


def trl_chat_template(name: str) -> str:
    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text()


def fingerprint(spec: TinyModelParams) -> dict[str, Any]:
    """What a build depends on: the architecture, the tokenizer's alphabet and the chat template."""
    template = CHAT_TEMPLATE if spec.chat_template is None else trl_chat_template(spec.chat_template)
    return {"spec": spec.model_dump(), "alphabet": ALPHABET, "template": template}


def build_tokenizer(
    vocab_size: int | None = None, chat_template: str | None = None, number_tokens: bool = False
) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per printable ASCII character, plus chat special tokens.

    ``number_tokens`` makes every run of up to three digits one token, as Llama 3's and GPT-4's tokenizers split
    numbers: copying a number (into a tool call, say) is then copying a token or two, not one per digit.

    ``chat_template`` names one of TRL's templates (``trl/chat_templates/<name>.jinja``) to use instead of the
    project's own: its special tokens (``<|im_start|>``, ``<|tool_call_start|>``, ...) become tokens and a newline
    a character, as that template needs. ``vocab_size`` pads the vocabulary with reserved tokens, for a model whose
    embedding table must match a real architecture's size.
    """
    template, special, eos = CHAT_TEMPLATE, SPECIAL_TOKENS, "<|end|>"
    alphabet = ALPHABET
    if chat_template is not None:
        template, eos, alphabet = trl_chat_template(chat_template), TRL_TEMPLATE_EOS, ALPHABET + "\n"
        found = sorted(set(TEMPLATE_TOKEN.findall(template)) | {eos})
        special = SPECIAL_TOKENS[:2] + found
    numbers = [str(n).zfill(width) for width in (2, 3) for n in range(10**width)] if number_tokens else []
    tokens = special + list(alphabet) + numbers
    if vocab_size is not None:
        if vocab_size < len(tokens):
            raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(tokens)} tokens the tokenizer needs")
        tokens += [f"<|reserved_{index}|>" for index in range(vocab_size - len(tokens))]
    vocab = {token: index for index, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\d{1,3}|." if number_tokens else "."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token=eos,
        additional_special_tokens=[token for token in special[2:] if token != eos],
        chat_template=template,
        model_max_length=TinyModelParams().max_position_embeddings,
        padding_side="left",
    )


def build_tiny_model(spec: TinyModelParams) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = build_tokenizer(chat_template=spec.chat_template, number_tokens=spec.number_tokens)
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

"""Loading a causal LM and its tokenizer from a hub id or a local directory, the same way for both.

Training hands ``GRPOTrainer`` the model's path and the run's ``model_init_kwargs`` (``RunConfig.model_init_kwargs``)
as ``GRPOConfig.model_init_kwargs``, so TRL loads the policy (and a reference model) itself: dtype,
``attn_implementation``, kernels, ``quantization_config`` for QLoRA. Elsewhere :func:`load_causal_lm` loads through
the same TRL function with the same arguments (validation, a reloaded checkpoint). Safe
defaults: safetensors only, remote code only when ``model.trust_remote_code`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import DistributedType
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import create_model_from_path

from grpo_pipeline.config.schema import ModelParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.models.gguf import ensure_gguf_model
from grpo_pipeline.models.tiny import ensure_tiny_model


class ModelLoadingError(ProjectError, ValueError):
    """A model or tokenizer the pipeline cannot use as it is; the message says which and what to use instead."""


def ensure_base_model(model: ModelParams) -> str:
    """Where the base model is: built here when ``model.build_tiny`` or ``model.from_gguf`` is set (reused while its
    fingerprint matches), otherwise the hub id or path."""
    if model.from_gguf is not None:
        return str(ensure_gguf_model(model.name_or_path, model.from_gguf))
    if model.build_tiny is not None:
        return str(ensure_tiny_model(model.name_or_path, model.build_tiny))
    return model.name_or_path


def load_tokenizer(
    name_or_path: str | Path, revision: str | None = None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.chat_template is None:
        raise ModelLoadingError(
            f"The tokenizer of '{name_or_path}' has no chat template. Use an instruct/chat model, or set "
            "model.build_tiny to let the project build its tiny chat model."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_path: str | Path, **model_init_kwargs: Any) -> PreTrainedModel:
    """The model as TRL's ``create_model_from_path`` makes it from ``model_init_kwargs`` (a run's: dtype,
    quantization, attention, see ``RunConfig.model_init_kwargs``); safetensors only unless they say otherwise."""
    kwargs: dict[str, Any] = {"dtype": "float32", "use_safetensors": True, **model_init_kwargs}
    # As GRPOTrainer does: under DDP/DeepSpeed each process holds the whole model, so no device_map="auto".
    if PartialState().distributed_type in (DistributedType.MULTI_GPU, DistributedType.DEEPSPEED):
        kwargs["device_map"] = None
    return create_model_from_path(str(name_or_path), **kwargs)


def loading_choices(model: PreTrainedModel) -> dict[str, str]:
    """How the model was loaded and runs, as the trainer holds it: dtype, attention, checkpointing, quantization."""
    config = model.config
    quantization = getattr(config, "quantization_config", None)
    return {
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "attn_implementation": str(getattr(config, "_attn_implementation", None)),
        "gradient_checkpointing": str(bool(getattr(model, "is_gradient_checkpointing", False))),
        "quantization": str(quantization.get("quant_method") if isinstance(quantization, dict) else quantization),
    }

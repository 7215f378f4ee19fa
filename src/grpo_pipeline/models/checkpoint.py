"""A trained model on disk: a ``save_pretrained`` directory (safetensors), LoRA adapters, a merged export.

A full model is saved as ``model.safetensors``; a LoRA model as ``adapter_model.safetensors`` +
``adapter_config.json`` and, when asked, base+adapter merged into one model in ``merged/``. The
directory is staged beside its target and renamed into place, so a crash while saving leaves the
previous checkpoint intact. Loading always reads the files, never an in-memory model, which is what
checkpoint validation relies on.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_pipeline.atomic import atomic_directory
from grpo_pipeline.errors import ProjectError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TRAINER_STATE_FILE = "trainer_state.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MERGED_DIR = "merged"


class CheckpointSaveError(ProjectError, ValueError):
    """The checkpoint cannot be saved as the parameters ask."""


@dataclass
class HFCheckpoint:
    """A trained model with its tokenizer and trainer state.

    ``model`` is a plain model or a ``peft.PeftModel`` (LoRA). For the latter, ``export_merged`` asks
    :func:`save_checkpoint` to also write base+adapter merged into one model, which ``merged_model``
    holds on load.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    trainer_state: dict[str, Any] = field(default_factory=dict)
    export_merged: bool = False
    merged_model: PreTrainedModel | None = None
    path: str | None = None

    @property
    def is_adapter(self) -> bool:
        # An adapter model is a peft.PeftModel, so peft is imported whenever one exists; no import here.
        peft = sys.modules.get("peft")
        return peft is not None and isinstance(self.model, peft.PeftModel)


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds a saved full model or LoRA adapter."""
    path = Path(path)
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG_FILE).is_file()


def merged_copy(adapter_model: Any) -> PreTrainedModel:
    """Base+adapter merged into one plain model, the adapter model left intact (``merge_and_unload`` rewrites the
    layers it merges, so a copy is merged)."""
    return copy.deepcopy(adapter_model).merge_and_unload()


def save_checkpoint(checkpoint: HFCheckpoint, path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically (safetensors only) and record the path on it."""
    if checkpoint.export_merged and not checkpoint.is_adapter:
        raise CheckpointSaveError(
            "peft.merge_and_export needs a LoRA model (peft set), but this checkpoint is a full model; set "
            "peft.merge_and_export=false or train with peft"
        )
    with atomic_directory(Path(path)) as staging:
        checkpoint.model.save_pretrained(staging, safe_serialization=True)
        checkpoint.tokenizer.save_pretrained(staging)
        (staging / TRAINER_STATE_FILE).write_text(json.dumps(checkpoint.trainer_state, indent=2))
        if checkpoint.export_merged:
            merged = merged_copy(checkpoint.model)
            merged.save_pretrained(staging / MERGED_DIR, safe_serialization=True)
            checkpoint.tokenizer.save_pretrained(staging / MERGED_DIR)
    checkpoint.path = str(path)


def load_checkpoint(path: str | Path, **load_args: Any) -> HFCheckpoint:
    """The checkpoint saved at ``path``: the full model, or the adapter on its base model, plus the merged export.

    The weights are loaded as the run that trained them loaded its model (the ``model_init_kwargs`` its trainer
    state records: dtype, quantization, attention implementation), so a QLoRA adapter is put on the quantized base it
    trained on; ``load_args`` override single arguments.
    """
    from peft import PeftModel  # noqa: PLC0415 (peft costs seconds to import; only adapters need it)

    from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer  # noqa: PLC0415 (torch)

    path = Path(path)
    if not is_checkpoint(path):
        raise FileNotFoundError(f"No checkpoint at '{path}' (neither config.json nor {ADAPTER_CONFIG_FILE})")
    state_file = path / TRAINER_STATE_FILE
    trainer_state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    # The revision names the hub base model, not these local files.
    kwargs = {**(trainer_state.get("model_init_kwargs") or {}), **load_args}
    local_kwargs = {key: value for key, value in kwargs.items() if key != "revision"}
    if (path / ADAPTER_CONFIG_FILE).is_file():
        base_path = json.loads((path / ADAPTER_CONFIG_FILE).read_text())["base_model_name_or_path"]
        model = PeftModel.from_pretrained(load_causal_lm(base_path, **kwargs), str(path))
    else:
        model = load_causal_lm(path, **local_kwargs)
    merged_path = path / MERGED_DIR
    # The merged export holds plain (dequantized) weights.
    merged_kwargs = {key: value for key, value in local_kwargs.items() if key != "quantization_config"}
    return HFCheckpoint(
        model=model,
        tokenizer=load_tokenizer(path, trust_remote_code=bool(kwargs.get("trust_remote_code", False))),
        trainer_state=trainer_state,
        export_merged=merged_path.is_dir(),
        merged_model=load_causal_lm(merged_path, **merged_kwargs) if merged_path.is_dir() else None,
        path=str(path),
    )


def save_weights(model: Any, directory: str | Path) -> None:
    """``model``'s config and weights (safetensors; a LoRA model: its adapter) written by this process whatever its
    distributed rank, for a machine other than the main one."""
    import safetensors.torch  # noqa: PLC0415 (torch)
    from peft import PeftModel, get_peft_model_state_dict  # noqa: PLC0415 (same)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        model.peft_config["default"].save_pretrained(str(directory))
        weights = get_peft_model_state_dict(model)
        safetensors.torch.save_file(weights, str(directory / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt"})
        return
    model.config.save_pretrained(str(directory))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(directory))
    # save_model drops the copies of tied tensors (e.g. tied input and output embeddings) that save_file refuses.
    safetensors.torch.save_model(model, str(directory / "model.safetensors"), metadata={"format": "pt"})

"""A Hugging Face model directory (weights, tokenizer, trainer state) as a Kedro dataset."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_pipeline.atomic import atomic_directory
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer

TRAINER_STATE_FILE = "trainer_state.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
MERGED_DIR = "merged"


@dataclass
class HFCheckpoint:
    """A trained model with its tokenizer and trainer state.

    ``model`` is a plain model or a ``peft.PeftModel`` (LoRA). For the latter, ``export_merged`` asks
    the dataset to also write base+adapter merged into one model, which ``merged_model`` holds on load.
    """

    model: PreTrainedModel | PeftModel
    tokenizer: PreTrainedTokenizerBase
    trainer_state: dict[str, Any] = field(default_factory=dict)
    export_merged: bool = False
    merged_model: PreTrainedModel | None = None
    path: str | None = None

    @property
    def is_adapter(self) -> bool:
        return isinstance(self.model, PeftModel)


class HFCheckpointDataset(AbstractDataset[HFCheckpoint, HFCheckpoint]):
    """Saves an :class:`HFCheckpoint` as a standard ``save_pretrained`` directory and loads it back from disk.

    Full models are saved as ``model.safetensors``; LoRA models as ``adapter_model.safetensors`` +
    ``adapter_config.json`` (and, when asked, the merged model in ``merged/``). The directory is staged
    beside its target and renamed into place, so a crash while saving leaves the previous checkpoint
    intact. Loading always reads the files (safetensors only), never a cached in-memory model, which
    is what checkpoint validation relies on.
    """

    def __init__(
        self,
        path: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = PurePosixPath(path)
        self._load_args = {"dtype": "float32", "trust_remote_code": False, **(load_args or {})}
        self.metadata = metadata

    def load(self) -> HFCheckpoint:
        path = Path(self._path)
        if not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG_FILE).is_file():
            raise DatasetError(
                f"No checkpoint at '{path}' (neither config.json nor {ADAPTER_CONFIG_FILE}). Run the training "
                "stage first, e.g. `kedro run --pipelines=grpo_debug`."
            )
        if (path / ADAPTER_CONFIG_FILE).is_file():
            base_path = json.loads((path / ADAPTER_CONFIG_FILE).read_text())["base_model_name_or_path"]
            model = PeftModel.from_pretrained(load_causal_lm(base_path, **self._load_args), str(path))
        else:
            model = load_causal_lm(path, **self._load_args)
        merged_path = path / MERGED_DIR
        state_file = path / TRAINER_STATE_FILE
        return HFCheckpoint(
            model=model,
            tokenizer=load_tokenizer(path, trust_remote_code=self._load_args["trust_remote_code"]),
            trainer_state=json.loads(state_file.read_text()) if state_file.is_file() else {},
            export_merged=merged_path.is_dir(),
            merged_model=load_causal_lm(merged_path, **self._load_args) if merged_path.is_dir() else None,
            path=str(path),
        )

    def save(self, data: HFCheckpoint) -> None:
        if data.export_merged and not data.is_adapter:
            raise DatasetError("merge_and_export needs a LoRA (peft) model; this checkpoint is a full model")
        with atomic_directory(Path(self._path)) as staging:
            data.model.save_pretrained(staging, safe_serialization=True)
            data.tokenizer.save_pretrained(staging)
            (staging / TRAINER_STATE_FILE).write_text(json.dumps(data.trainer_state, indent=2))
            if data.export_merged:
                # merge_and_unload rewrites the layers it merges; merge a copy to keep the adapter model intact.
                merged = copy.deepcopy(data.model).merge_and_unload()
                merged.save_pretrained(staging / MERGED_DIR, safe_serialization=True)
                data.tokenizer.save_pretrained(staging / MERGED_DIR)
        data.path = str(self._path)

    def _exists(self) -> bool:
        path = Path(self._path)
        return (path / "config.json").is_file() or (path / ADAPTER_CONFIG_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}

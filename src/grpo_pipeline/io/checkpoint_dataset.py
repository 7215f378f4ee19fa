"""A Hugging Face model directory (weights, tokenizer, trainer state) as a Kedro dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_pipeline.io.atomic import atomic_directory
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer

TRAINER_STATE_FILE = "trainer_state.json"


@dataclass
class HFCheckpoint:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    trainer_state: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


class HFCheckpointDataset(AbstractDataset[HFCheckpoint, HFCheckpoint]):
    """Saves an :class:`HFCheckpoint` as a standard ``save_pretrained`` directory and loads it back from disk.

    The directory is staged beside its target and renamed into place, so a crash while saving leaves
    the previous checkpoint intact. Loading always reads the files (safetensors only), never a cached
    in-memory model, which is what checkpoint validation relies on.
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
        if not (path / "config.json").is_file():
            raise DatasetError(
                f"No checkpoint at '{path}' (config.json missing). Run the training stage first, e.g. "
                "`kedro run --pipeline=grpo_debug`."
            )
        state_file = path / TRAINER_STATE_FILE
        return HFCheckpoint(
            model=load_causal_lm(path, **self._load_args),
            tokenizer=load_tokenizer(path, trust_remote_code=self._load_args["trust_remote_code"]),
            trainer_state=json.loads(state_file.read_text()) if state_file.is_file() else {},
            path=str(path),
        )

    def save(self, data: HFCheckpoint) -> None:
        with atomic_directory(Path(self._path)) as staging:
            data.model.save_pretrained(staging, safe_serialization=True)
            data.tokenizer.save_pretrained(staging)
            (staging / TRAINER_STATE_FILE).write_text(json.dumps(data.trainer_state, indent=2))
        data.path = str(self._path)

    def _exists(self) -> bool:
        return (Path(self._path) / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}

"""A Hugging Face model directory (weights, tokenizer, trainer state) as a Kedro dataset."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from grpo_pipeline.models.checkpoint import HFCheckpoint, is_checkpoint, load_checkpoint, save_checkpoint


class HFCheckpointDataset(AbstractDataset[HFCheckpoint, HFCheckpoint]):
    """Saves an :class:`HFCheckpoint` with :func:`save_checkpoint` and loads it back from disk, as the run that trained
    it loaded its model."""

    def __init__(
        self,
        path: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = PurePosixPath(path)
        # Empty: the checkpoint is loaded as its run loaded the model (models/checkpoint.py); set to override.
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def load(self) -> HFCheckpoint:
        try:
            return load_checkpoint(Path(self._path), **self._load_args)
        except FileNotFoundError as error:
            raise DatasetError(
                f"{error}. Run the training stage first, e.g. `kedro run --pipelines=grpo_debug`."
            ) from None

    def save(self, data: HFCheckpoint) -> None:
        try:
            save_checkpoint(data, Path(self._path))
        except ValueError as error:
            raise DatasetError(str(error)) from None

    def _exists(self) -> bool:
        return is_checkpoint(Path(self._path))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}

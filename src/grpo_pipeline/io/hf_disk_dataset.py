"""A Hugging Face dataset saved with ``datasets.save_to_disk``, as a pandas table: the offline copy of a hub dataset.

On a connected machine kedro-datasets' ``huggingface.HFDataset`` reads the hub id itself; this reads the
directory ``save_to_disk`` wrote (a ``Dataset``, or a ``DatasetDict`` with ``split`` chosen).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from grpo_pipeline.prompts import SOURCE_ATTR


class HFDiskDataset(AbstractDataset[None, pd.DataFrame | dict[str, pd.DataFrame]]):
    """``datasets.load_from_disk(path)`` as a DataFrame; a DatasetDict as one DataFrame per split, or only its
    ``split`` when one is given. Read-only."""

    def __init__(self, path: str, split: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self._split = split
        self.metadata = metadata

    def load(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        from datasets import DatasetDict, load_from_disk  # noqa: PLC0415 (datasets is heavy; only loading needs it)

        try:
            dataset = load_from_disk(str(self._path))
        except FileNotFoundError as error:
            raise DatasetError(f"{self._path}: not a `save_to_disk` directory ({error})") from None
        if isinstance(dataset, DatasetDict) and self._split is None:
            return {split: self._frame(table, split) for split, table in dataset.items()}
        if isinstance(dataset, DatasetDict):
            if self._split not in dataset:
                raise DatasetError(f"{self._path} holds the splits {sorted(dataset)}; set `split:` to one of them")
            return self._frame(dataset[self._split], self._split)
        return self._frame(dataset, None)

    def _frame(self, dataset: Any, split: str | None) -> pd.DataFrame:
        frame = dataset.to_pandas()
        frame.attrs[SOURCE_ATTR] = str(self._path) + (f" split '{split}'" if split else "")
        return frame

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is a raw dataset; the pipeline reads it and never writes it")

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "split": self._split}

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


def as_frames(dataset: Any, source: str, split: str | None) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """A Hugging Face ``Dataset`` as a DataFrame, a ``DatasetDict`` as one per split (or only ``split``), each
    labelled with ``source`` for messages."""
    from datasets import DatasetDict  # noqa: PLC0415 (datasets is heavy; only loading needs it)

    def frame(table: Any, split: str | None) -> pd.DataFrame:
        loaded = table.to_pandas()
        loaded.attrs[SOURCE_ATTR] = source + (f" split '{split}'" if split else "")
        return loaded

    if isinstance(dataset, DatasetDict) and split is None:
        return {name: frame(table, name) for name, table in dataset.items()}
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise DatasetError(f"{source} holds the splits {sorted(dataset)}; set `split:` to one of them")
        return frame(dataset[split], split)
    return frame(dataset, None)


class HFDiskDataset(AbstractDataset[None, pd.DataFrame | dict[str, pd.DataFrame]]):
    """``datasets.load_from_disk(path)`` as a DataFrame; a DatasetDict as one DataFrame per split, or only its
    ``split`` when one is given. Read-only."""

    def __init__(self, path: str, split: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self._split = split
        self.metadata = metadata

    def load(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        from datasets import load_from_disk  # noqa: PLC0415 (datasets is heavy; only loading needs it)

        try:
            dataset = load_from_disk(str(self._path))
        except FileNotFoundError as error:
            raise DatasetError(f"{self._path}: not a `save_to_disk` directory ({error})") from None
        return as_frames(dataset, str(self._path), self._split)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is a raw dataset; the pipeline reads it and never writes it")

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "split": self._split}

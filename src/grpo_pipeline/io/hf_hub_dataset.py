"""A Hugging Face dataset by hub id (or a local folder of data files), as pandas tables: what a TRL or open-r1 recipe's
``dataset_name`` names.

It takes kedro-datasets' ``huggingface.HFDataset`` arguments (``dataset_name``, ``dataset_kwargs``: ``name``,
``revision``, ``split``, ``data_dir``, ...) and reads with ``datasets.load_dataset`` as that does, but describes itself
without asking the hub (``HFDataset`` looks the dataset up on the hub to print itself, which an offline machine, or a
local folder, cannot answer) and gives pandas tables, one per split.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from grpo_pipeline.io.hf_disk_dataset import as_frames


class HFHubDataset(AbstractDataset[None, pd.DataFrame | dict[str, pd.DataFrame]]):
    """``datasets.load_dataset(dataset_name, **dataset_kwargs)`` as a DataFrame per split. Read-only."""

    def __init__(
        self, *, dataset_name: str, dataset_kwargs: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._dataset_name = dataset_name
        self._dataset_kwargs = dict(dataset_kwargs or {})
        self.metadata = metadata

    def load(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        from datasets import load_dataset  # noqa: PLC0415 (datasets is heavy; only loading needs it)

        kwargs = {key: value for key, value in self._dataset_kwargs.items() if key != "split"}
        return as_frames(
            load_dataset(self._dataset_name, **kwargs), self._dataset_name, self._dataset_kwargs.get("split")
        )

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._dataset_name} is a raw dataset; the pipeline reads it and never writes it")

    def _describe(self) -> dict[str, Any]:
        return {"dataset_name": self._dataset_name, "dataset_kwargs": self._dataset_kwargs}

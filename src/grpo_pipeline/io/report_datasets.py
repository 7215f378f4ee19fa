"""Report files written atomically: a reader never sees half a JSON report, table or figure."""

from __future__ import annotations

import io
import json
from pathlib import Path, PurePosixPath
from typing import Any, NewType

import pandas as pd
from kedro.io import AbstractDataset

from grpo_pipeline.atomic import atomic_write_bytes, atomic_write_text

# kedro-viz picks a preview's renderer by the name of the `preview` method's return annotation, as its
# docs show for custom datasets; kedro-datasets keeps its own such types private.
TablePreview = NewType("TablePreview", dict)


class _AtomicFileDataset(AbstractDataset[Any, Any]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()


class JSONReportDataset(_AtomicFileDataset):
    """A dict saved as indented JSON."""

    def load(self) -> dict[str, Any]:
        return json.loads(Path(self._filepath).read_text(encoding="utf-8"))

    def save(self, data: dict[str, Any]) -> None:
        atomic_write_text(self._filepath, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class TextReportDataset(_AtomicFileDataset):
    """A string saved as a text file: markdown, HTML, ..."""

    def load(self) -> str:
        return Path(self._filepath).read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        atomic_write_text(self._filepath, data)


class CSVTableDataset(_AtomicFileDataset):
    """A DataFrame saved as CSV without its index."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath)

    def save(self, data: pd.DataFrame) -> None:
        atomic_write_text(self._filepath, data.to_csv(index=False))

    def preview(self, nrows: int = 5) -> TablePreview:
        """Table preview for kedro-viz (the return annotation tells it to render a table)."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))


class PNGFigureDataset(_AtomicFileDataset):
    """A matplotlib figure saved as PNG."""

    def load(self) -> bytes:
        return Path(self._filepath).read_bytes()

    def save(self, data: Any) -> None:
        buffer = io.BytesIO()
        data.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        atomic_write_bytes(self._filepath, buffer.getvalue())

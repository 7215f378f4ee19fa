"""Prompt files in JSON Lines, read with line numbers so that a bad row can be named precisely."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from grpo_pipeline.prompts import LINE_COLUMN, SOURCE_ATTR


class PromptJSONLinesDataset(AbstractDataset[None, pd.DataFrame]):
    """JSON Lines prompts (local or any fsspec URL) as a DataFrame that keeps each record's 1-based line number.

    The frame gets a ``line_number`` column and ``frame.attrs["source"]`` (the file path), which the
    prompt-preparation node uses in its error messages. Blank lines are skipped; a line that is not a
    JSON object raises one error naming the file and line. Read-only: the pipeline never writes raw data.
    """

    def __init__(
        self,
        filepath: str,
        fs_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filesystem, path = fsspec.core.url_to_fs(filepath, **(fs_args or {}), **(credentials or {}))
        self._filepath = PurePosixPath(path)
        self._source = filepath
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        records = []
        with self._filesystem.open(str(self._filepath), mode="r", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.strip())
                except json.JSONDecodeError as error:
                    raise DatasetError(
                        f"{self._source} line {line_number}: malformed JSON ({error.msg} at column {error.colno}). "
                        "Each line must be one JSON object; fix or delete that line."
                    ) from None
                if not isinstance(record, dict):
                    raise DatasetError(
                        f"{self._source} line {line_number}: expected a JSON object, got {type(record).__name__}. "
                        'Write each row as {"prompt": ..., "answer": ...}.'
                    )
                records.append({**record, LINE_COLUMN: line_number})
        frame = pd.DataFrame.from_records(records)
        frame.attrs[SOURCE_ATTR] = self._source
        return frame

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._source} is a raw prompt file; the pipeline reads it and never writes it")

    def _exists(self) -> bool:
        return bool(self._filesystem.exists(str(self._filepath)))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._source}

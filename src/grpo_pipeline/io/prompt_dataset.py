"""Prompt files in JSON Lines, read with line numbers so that a bad row can be named precisely."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from grpo_pipeline.prompts import LINE_COLUMN, ROW_PROBLEM_COLUMN, SOURCE_ATTR


class PromptJSONLinesDataset(AbstractDataset[None, pd.DataFrame]):
    """JSON Lines prompts (local or any fsspec URL) as a DataFrame that keeps each record's 1-based line number.

    The frame gets a ``line_number`` column and ``frame.attrs["source"]`` (the file path), which the
    prompt-preparation node uses in its error messages. Blank lines are skipped; a line that is not a
    JSON object becomes a row holding only its problem (``row_problem``), reported with every other bad row.
    Read-only: the pipeline never writes raw data.
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
                    record = json.loads(line.rstrip())  # columns count from the line's start, as in an editor
                except json.JSONDecodeError as error:
                    # Kept as a row, so that every bad row of the file is reported together (prompts.normalised_rows).
                    problem = f"malformed JSON ({error.msg}, column {error.colno}); each line must be one JSON object"
                    records.append({ROW_PROBLEM_COLUMN: problem, LINE_COLUMN: line_number})
                    continue
                if not isinstance(record, dict):
                    problem = f'expected a JSON object, got {type(record).__name__}; write {{"prompt": ..., ...}}'
                    records.append({ROW_PROBLEM_COLUMN: problem, LINE_COLUMN: line_number})
                    continue
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

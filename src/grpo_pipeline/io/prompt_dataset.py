"""Prompt files in JSON Lines, read with line numbers so that a bad row can be named precisely."""

from __future__ import annotations

import json

import pandas as pd
from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.pandas import JSONDataset

SOURCE_ATTR = "source"
LINE_COLUMN = "line_number"


class PromptJSONLinesDataset(JSONDataset):
    """``pandas.JSONDataset`` for JSON Lines that keeps each record's 1-based line number.

    The frame gets a ``line_number`` column and ``frame.attrs["source"]`` (the file path), which the
    prompt-preparation node uses in its error messages. Blank lines are skipped; a line that is not a
    JSON object raises one error naming the file and line.
    """

    def load(self) -> pd.DataFrame:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        records = []
        with self._fs.open(load_path, mode="r", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.strip())
                except json.JSONDecodeError as error:
                    raise DatasetError(
                        f"{load_path} line {line_number}: malformed JSON ({error.msg} at column {error.colno}). "
                        "Each line must be one JSON object; fix or delete that line."
                    ) from None
                if not isinstance(record, dict):
                    raise DatasetError(
                        f"{load_path} line {line_number}: expected a JSON object, got {type(record).__name__}. "
                        'Write each row as {"prompt": ..., "answer": ...}.'
                    )
                records.append({**record, LINE_COLUMN: line_number})
        frame = pd.DataFrame.from_records(records)
        frame.attrs[SOURCE_ATTR] = load_path
        return frame

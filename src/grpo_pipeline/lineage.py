"""Data lineage: the prompts a run trained and was validated on, logged to its MLflow run as dataset inputs.

Each table the run uses (the training split, and the source's own eval split when ``data.eval_split`` names one)
becomes an MLflow dataset input, shown on the run's page: its source (the catalog entry's type and path, or hub id
with config and revision), split, row count, and a hash of its whole content, so two runs on different data differ
in MLflow even where their parameters do not, and a copy of the same data in another format hashes the same.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from grpo_pipeline.config.schema import DataParams
from grpo_pipeline.prompts import RawPrompts, source_tables

# The catalog entry's keys that say where the data is (never its credentials or load options).
LOCATION_KEYS = ("filepath", "path", "dataset_name")
HUB_KEYS = ("name", "revision", "split", "data_dir")


def describe_source(entry: dict[str, Any]) -> dict[str, Any]:
    """Where a catalog entry's data comes from: its type, location and, for a hub dataset, config and revision."""
    location = next((_project_relative(str(entry[key])) for key in LOCATION_KEYS if entry.get(key)), None)
    described = {"type": str(entry.get("type")), "location": location}
    if entry.get("dataset_name"):  # a Hugging Face dataset: a hub id (or a local folder load_dataset reads)
        hub = {key: (entry.get("dataset_kwargs") or {}).get(key) for key in HUB_KEYS}
        described |= {f"hub_{key}": str(value) for key, value in hub.items() if value is not None}
        described["hub"] = not Path(location).exists()
    if entry.get("split") is not None:
        described["split"] = str(entry["split"])
    return described


def _project_relative(location: str) -> str:
    """A path inside the project as Kedro's catalog holds it relative (the same on every machine), else as it is."""
    path = Path(location)
    return str(path.relative_to(Path.cwd())) if path.is_absolute() and path.is_relative_to(Path.cwd()) else location


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of every row's values (column names included, row order kept), the same whichever format held them."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(map(str, frame.columns))).encode())
    for record in frame.to_dict(orient="records"):
        digest.update(json.dumps(record, sort_keys=True, default=_plain).encode())
    return digest.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON for what Parquet and Hugging Face tables hold beside plain values: arrays of messages, numpy scalars."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def used_tables(raw_prompts: RawPrompts, params: DataParams) -> list[tuple[str, str | None, pd.DataFrame]]:
    """(context, split, table) of each table a run uses: training, and evaluation when the source has its own split."""
    train, evaluation = source_tables(raw_prompts, params)
    several = not isinstance(raw_prompts, pd.DataFrame)
    tables = [("training", params.train_split if several else None, train)]
    if evaluation is not None:
        tables.append(("evaluation", params.eval_split, evaluation))
    return tables


def log_data_source(
    raw_prompts: RawPrompts, params: DataParams, dataset_name: str, entry: dict[str, Any]
) -> list[dict]:
    """Log each table the run uses as an MLflow dataset input of the active run; what was logged, one dict each."""
    import mlflow  # noqa: PLC0415 (MLflow is imported by what logs, not by what is imported)

    source = describe_source(entry)
    logged = []
    for context, split, table in used_tables(raw_prompts, params):
        record = {
            **source,
            "split": split or source.get("split"),
            "rows": len(table),
            "content_hash": content_hash(table),
        }
        record = {key: value for key, value in record.items() if value is not None}
        with warnings.catch_warnings():
            # A local path reads as two of MLflow's source kinds alike; it warns, then takes the local file's.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted", UserWarning)
            dataset = mlflow.data.from_pandas(
                _loggable(table),
                source=_mlflow_source(source, split),
                name=dataset_name + (f"[{split}]" if split else ""),
            )
        mlflow.log_input(dataset, context=context, tags={f"grpo.{key}": str(value) for key, value in record.items()})
        logged.append({"context": context, **record})
    return logged


def _loggable(table: pd.DataFrame) -> pd.DataFrame:
    """The table with nested values (chat messages) as JSON text: MLflow infers a schema from the values."""
    nested = [column for column in table.columns if table[column].map(lambda value: not _is_scalar(value)).any()]
    return table.assign(
        **{column: table[column].map(lambda value: json.dumps(value, default=_plain)) for column in nested}
    )


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _mlflow_source(source: dict[str, Any], split: str | None) -> Any:
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource  # noqa: PLC0415

    location = source.get("location") or source["type"]
    if source.get("hub"):
        return HuggingFaceDatasetSource(
            path=location,
            config_name=source.get("hub_name"),
            revision=source.get("hub_revision"),
            split=split or source.get("hub_split"),
            data_dir=source.get("hub_data_dir"),
        )
    return str(Path(location).resolve()) if Path(location).exists() else location

"""Custom Kedro datasets of the project."""

from grpo_pipeline.io.checkpoint_dataset import HFCheckpointDataset
from grpo_pipeline.io.prompt_dataset import PromptJSONLinesDataset
from grpo_pipeline.io.report_datasets import (
    CSVTableDataset,
    JSONReportDataset,
    PNGFigureDataset,
    TextReportDataset,
)

__all__ = [
    "CSVTableDataset",
    "HFCheckpointDataset",
    "JSONReportDataset",
    "PNGFigureDataset",
    "PromptJSONLinesDataset",
    "TextReportDataset",
]

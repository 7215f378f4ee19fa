"""Custom Kedro datasets of the project."""

from grpo_pipeline.io.checkpoint_dataset import HFCheckpointDataset
from grpo_pipeline.io.hf_disk_dataset import HFDiskDataset
from grpo_pipeline.io.hf_hub_dataset import HFHubDataset
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
    "HFDiskDataset",
    "HFHubDataset",
    "JSONReportDataset",
    "PNGFigureDataset",
    "PromptJSONLinesDataset",
    "TextReportDataset",
]

"""The validation report: what validating a checkpoint found, one typed object that owns its status.

Validation (validation.py) builds it; the pipeline saves it as JSON (:meth:`ValidationReport.to_dict`), and what
reads the saved report (the registry, the hooks, the comparison of runs, the markdown in reporting.py) reads that
JSON through the functions here. Nothing here draws or formats tables: training and the registry import it freely.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# How a validation ends: its gates set and met, not met, or none set (nothing checked).
PASSED, FAILED, NO_GATE = "PASSED", "FAILED", "NO GATE"
# The validation parameters that gate the checkpoint; with none set the report says nothing was checked.
GATES = ("min_eval_reward", "min_reward_gain", "min_greedy_accuracy_gain", "min_sampled_accuracy_gain")
DECODINGS = ("greedy", "sampled")


def thresholds_of(params: Any) -> dict[str, float | None]:
    """The gates a ``ValidationParams`` sets (None: not set)."""
    return {gate: getattr(params, gate) for gate in GATES}


def status_of(failures: list[str], thresholds: dict[str, float | None]) -> str:
    """FAILED with any failure, PASSED when a gate was set and met, NO GATE when none was set (nothing checked)."""
    if failures:
        return FAILED
    return PASSED if any(value is not None for value in thresholds.values()) else NO_GATE


@dataclass(frozen=True)
class ValidationReport:
    """The scores of the base model and of the checkpoint reloaded from disk on the held-out prompts (``base`` and
    ``trained``: greedy figures at the top, sampled ones under ``sampled``), the merged-export check, the gates and
    what failed them, sample completions; which run validated and which trained the checkpoint."""

    mlflow_run_id: str | None
    checkpoint: str | None
    checkpoint_mlflow_run_id: str | None
    base_model: str
    global_step: int | None
    eval_prompts: int
    max_new_tokens: int
    sampling: dict[str, Any]
    reward_weights: dict[str, float]
    accuracy_reward: str | None
    base: dict[str, Any]
    trained: dict[str, Any]
    reward_gain: float | None
    accuracy_gain: dict[str, float | None] | None
    adapter: bool
    trained_model: str
    model_loading: dict[str, Any]
    merged_export: dict[str, Any] | None
    thresholds: dict[str, float | None]
    failures: list[str]
    samples: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return status_of(self.failures, self.thresholds)

    @property
    def passed(self) -> bool | None:
        """Whether the gates were met: None when none was set, so that nothing reads an unchecked run as passed."""
        return None if self.status == NO_GATE else not self.failures

    def to_dict(self) -> dict[str, Any]:
        """The report as the pipeline saves it (JSON), its status and ``passed`` written out for readers."""
        return dataclasses.asdict(self) | {"status": self.status, "passed": self.passed}


def decoded_scores(model_scores: dict[str, Any], decoding: str) -> dict[str, Any] | None:
    """A report's scores of one model under ``decoding``: greedy ones at the top, sampled ones nested."""
    return model_scores if decoding == "greedy" else model_scores.get("sampled")


def validation_metrics(report: dict[str, Any]) -> dict[str, float]:
    """A saved report's scores as flat, finite metrics, e.g. ``validation/trained/greedy/accuracy``."""
    metrics: dict[str, float | None] = {"validation/reward_gain": report["reward_gain"]}
    for model in ("base", "trained"):
        for decoding in DECODINGS:
            scores = decoded_scores(report[model], decoding) or {}
            prefix = f"validation/{model}/{decoding}"
            metrics[f"{prefix}/mean_reward"] = scores.get("mean_reward")
            metrics[f"{prefix}/accuracy"] = scores.get("accuracy")
    for decoding, gain in (report.get("accuracy_gain") or {}).items():
        metrics[f"validation/{decoding}_accuracy_gain"] = gain
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(value)}


def gates_text(report: dict[str, Any]) -> str:
    """The gates a saved report was held to: ``min_greedy_accuracy_gain 0.15, ...``."""
    return ", ".join(f"{gate} {value}" for gate, value in report["thresholds"].items() if value is not None)

"""Nodes of ``compare_runs``: each parses its parameters, calls grpo_pipeline/comparison.py, and returns.

MLflow is imported when a node runs, not when the pipeline graph is built.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from grpo_pipeline.config.schema import CompareRunsParams, parse_section


def collect_runs(compare_runs: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen runs with their parameters, reward history, validation report and benchmark row."""
    from grpo_pipeline import comparison

    return comparison.collect_runs(parse_section(CompareRunsParams, compare_runs, "compare_runs"))


def plot_reward_curves(compared_runs: list[dict[str, Any]]) -> Any:
    """A matplotlib figure with every run's reward curve."""
    from grpo_pipeline.reporting import comparison_figure

    return comparison_figure(compared_runs)


def comparison_report(compared_runs: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """One row per run (outcome, speed, memory) and the parameters that differ between runs."""
    from grpo_pipeline import comparison

    return comparison.comparison_report(compared_runs)

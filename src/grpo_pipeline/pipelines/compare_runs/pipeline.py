"""`kedro run --pipelines=compare_runs`: reward curves, outcomes and config differences of chosen runs."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grpo_pipeline.pipelines.compare_runs import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.collect_runs,
                inputs="params:compare_runs",
                outputs="compared_runs",
                name="collect_runs",
            ),
            Node(
                nodes.plot_reward_curves,
                inputs="compared_runs",
                outputs="comparison_reward_curves",
                name="plot_reward_curves",
            ),
            Node(
                nodes.comparison_report,
                inputs="compared_runs",
                outputs=["comparison_table", "comparison_report_md"],
                name="comparison_report",
            ),
        ]
    )

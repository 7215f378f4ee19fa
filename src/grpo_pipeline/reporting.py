"""Human-readable renderings of the pipeline's reports: markdown tables and the reward-curve figure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from grpo_pipeline.validation_report import (
    DECODINGS,
    FAILED,
    NO_GATE,
    decoded_scores,
    gates_text,
)


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    divider = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(value) for value in record) + " |" for record in frame.itertuples(index=False)]
    return "\n".join([header, divider, *rows])


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# How the report names a validation's tool-use figures (evaluation.Evaluator.complete).
TOOL_USE_LABELS = {
    "tool_calls_per_completion": "tool calls",
    "tool_failure_rate": "tool errors",
    "tool_use_share": "used a tool",
    "turns_per_completion": "turns",
}


def at_k_labels(report: dict[str, Any]) -> dict[str, str]:
    """``pass@k`` and ``maj@k`` with the report's k (sampled completions per prompt)."""
    k = (report.get("sampling") or {}).get("completions_per_prompt")
    return {"pass_at_k": f"pass@{k}", "maj_at_k": f"maj@{k}"}


def _score_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model and decoding: accuracy (with an accuracy reward), the weighted sum, each reward, and for a
    reward that returned None (not applicable) on some completions, how many of them it skipped."""
    rows = []
    for model in ("base", "trained"):
        for decoding in DECODINGS:
            scores = decoded_scores(report[model], decoding)
            if not scores:
                continue
            accuracy = {"accuracy": _rounded(scores["accuracy"])} if report.get("accuracy_reward") else {}
            skipped = scores.get("skipped") or {}
            rows.append(
                {"model": model, "decoding": decoding, **accuracy}
                | {label: _rounded(scores.get(key)) for key, label in at_k_labels(report).items() if key in scores}
                | {"mean_reward": _rounded(scores["mean_reward"])}
                | {name: _rounded(value) for name, value in scores["rewards"].items()}
                | {f"{name} skipped": count for name, count in skipped.items() if any(skipped.values())}
                | {TOOL_USE_LABELS[key]: _rounded(value) for key, value in (scores.get("tool_use") or {}).items()}
            )
    return rows


def signed(value: float | None, digits: int = 3) -> str:
    return "none" if value is None else f"{value:+.{digits}f}"


def plain(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def accuracy_lines(report: dict[str, Any]) -> list[str]:
    """``greedy accuracy (accuracy): base 0.630 -> trained 0.880 (+0.250)``, one per decoding with an accuracy."""
    lines = []
    for decoding, gain in (report.get("accuracy_gain") or {}).items():
        if gain is not None:
            base, trained = (decoded_scores(report[model], decoding) for model in ("base", "trained"))
            at_k = "".join(
                f"; {label} {plain(base[key])} -> {plain(trained[key])}"
                for key, label in at_k_labels(report).items()
                if key in base and key in trained
            )
            lines.append(
                f"{decoding} accuracy ({report['accuracy_reward']}): base {plain(base['accuracy'])} -> trained "
                f"{plain(trained['accuracy'])} ({gain:+.3f}){at_k}"
            )
    return lines


def failed_run_report(
    status: str, mlflow_run_id: str | None, failed_node: str | None, error: str, checkpoint: dict[str, Any] | None
) -> dict[str, Any]:
    """The validation report of a run that failed or was interrupted before validating: it replaces the previous
    run's report, so that nothing presents that one as this run's result."""
    return {
        "passed": False,
        "status": status,
        "mlflow_run_id": mlflow_run_id,
        "failed_node": failed_node,
        "error": error,
        "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": checkpoint,
        "failures": [f"the run {'was interrupted' if status == 'KILLED' else 'failed'} before validation: {error}"],
    }


def status_text(report: dict[str, Any]) -> str:
    """How the validation ended, as the report and the run's summary say it."""
    if report["status"] == FAILED:
        return "**FAILED**: " + "; ".join(report["failures"])
    if report["status"] == NO_GATE:
        return (
            "**no gate set: nothing checked** beyond finite logits; set validation.min_eval_reward, min_reward_gain, "
            "min_greedy_accuracy_gain or min_sampled_accuracy_gain to gate the checkpoint"
        )
    return f"**PASSED** ({gates_text(report)})"


def failed_run_markdown(report: dict[str, Any]) -> str:
    checkpoint = report["checkpoint"]
    return "\n".join(
        [
            "# Checkpoint validation",
            "",
            f"- status: **{report['status']}**: {report['failures'][0]}",
            f"- MLflow run: `{report['mlflow_run_id']}`, ended {report['ended_at']}",
            f"- stopped in node: `{report['failed_node']}`",
            f"- checkpoint on disk: `{checkpoint['path']}`, trained by MLflow run `{checkpoint['mlflow_run_id']}`; "
            "this run did not validate it"
            if checkpoint
            else "- no checkpoint on disk",
            "",
        ]
    )


def validation_markdown(report: dict[str, Any]) -> str:
    rewards = pd.DataFrame(_score_rows(report))
    # pass@k and maj@k beside accuracy, though the greedy rows, first, have none.
    leading = ["model", "decoding", "accuracy", *at_k_labels(report).values()]
    rewards = rewards[[c for c in leading if c in rewards] + [c for c in rewards if c not in leading]]
    sampling = report.get("sampling") or {}
    samples = pd.DataFrame(report["samples"])
    return "\n".join(
        [
            "# Checkpoint validation",
            "",
            f"- MLflow run: `{report.get('mlflow_run_id')}`",
            f"- checkpoint: `{report['checkpoint']}` (global step {report['global_step']}, trained by MLflow run "
            f"`{report.get('checkpoint_mlflow_run_id')}`)",
            f"- base model: `{report['base_model']}`",
            f"- {report['eval_prompts']} held-out prompts, up to {report['max_new_tokens']} new tokens: greedy, and "
            f"{sampling.get('completions_per_prompt', 0)} sampled per prompt as in training (temperature "
            f"{sampling.get('temperature')})",
            f"- reward gain (trained - base, greedy): **{signed(report['reward_gain'], 4)}**",
            *(f"- held-out {line}" for line in accuracy_lines(report)),
            *(
                [
                    f"- LoRA merged export: identical greedy generations on "
                    f"{report['merged_export']['identical_greedy_generations']}/{report['merged_export']['prompts']} "
                    "prompts (base+adapter vs merged); the trained figures are the merged export's"
                ]
                if report.get("merged_export")
                else []
            ),
            f"- status: {status_text(report)}",
            "",
            "## Scores (each reward raw; mean_reward is their weighted sum, weights: "
            + ", ".join(f"{name} {weight:g}" for name, weight in report["reward_weights"].items())
            + "; a reward that returned None for a completion, not applicable, is left out of its mean and of the "
            "sum, and `<name> skipped` counts those completions)",
            "",
            markdown_table(rewards),
            "",
            "## Sample completions",
            "",
            markdown_table(samples) if not samples.empty else "_none requested_",
            "",
        ]
    )


def benchmark_table(timings: dict[str, Any], mode: str) -> pd.DataFrame:
    """One row of the benchmark table (the seed's mode / steps / wall time / s/step, and more)."""
    row = {
        "mode": mode,
        "steps": timings["steps"],
        "wall_time_s": round(timings["train_wall_seconds"], 2),
        "s_per_step": round(timings["train_wall_seconds"] / max(timings["steps"], 1), 4),
        "step_s_min": round(timings["step_seconds_min"], 4),
        "step_s_median": round(timings["step_seconds_median"], 4),
        "step_s_max": round(timings["step_seconds_max"], 4),
        # The training's wall time by phase, summing to 1 (training/run.py, phase_shares).
        **{f"{phase}_share": round(share, 3) for phase, share in timings["shares"].items()},
        "generated_tokens_per_s": round(timings["generated_tokens_per_second"], 1),
        "batch_size": timings["batch_size"],
        "num_generations": timings["num_generations"],
        "trainable_parameters": timings["trainable_parameters"],
        "total_parameters": timings["total_parameters"],
        "trainable_share": round(timings["trainable_parameters"] / timings["total_parameters"], 4),
        "peak_rss_mb": round(timings["peak_rss_mb"], 1),
        "peak_gpu_mb": None if timings["peak_gpu_mb"] is None else round(timings["peak_gpu_mb"], 1),
        "device": timings["device"],
    }
    return pd.DataFrame([row])


def benchmark_markdown(table: pd.DataFrame) -> str:
    return "# GRPO benchmark\n\n" + markdown_table(table) + "\n"


def _reward_axes(title: str, ylabel: str) -> tuple[Figure, Any]:
    """Axes for rewards over training steps (scaled to the data: a reward model's score is unbounded)."""
    # A pyplot-free Figure: no global figure state and no GUI backend, in a worker or a notebook alike.
    figure = Figure(figsize=(8, 4.5))
    axis = figure.subplots()
    axis.set_xlabel("training step")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    return figure, axis


def _with_legend(figure: Figure, axis: Any) -> Figure:
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def reward_curve_figure(metrics: pd.DataFrame, reward_names: list[str]) -> Figure:
    """The weighted reward per step with its spread, each reward (``reward_names``: as TRL names its metrics), and
    the held-out reward of each evaluation during training when there was one."""
    figure, axis = _reward_axes("GRPO training reward", "reward")
    train = metrics.dropna(subset=["reward"])
    steps = train["step"]
    axis.plot(steps, train["reward"], color="black", linewidth=2, label="reward (weighted sum)")
    if "reward_std" in train:
        axis.fill_between(
            steps,
            train["reward"] - train["reward_std"],
            train["reward"] + train["reward_std"],
            color="black",
            alpha=0.12,
            label="± reward std within groups",
        )
    for name in reward_names:
        column = f"rewards/{name}/mean"
        if column in train:
            axis.plot(steps, train[column], linewidth=1.2, label=f"{name} (mean)")
    if "eval/reward" in metrics:
        evaluated = metrics.dropna(subset=["eval/reward"])
        axis.plot(
            evaluated["step"],
            evaluated["eval/reward"],
            color="crimson",
            linewidth=2,
            marker="o",
            label="held-out reward (eval during training)",
        )
    return _with_legend(figure, axis)


def comparison_figure(runs: list[dict[str, Any]]) -> Figure:
    """Every run's reward curve on one axis, labelled by run name and id, with its held-out reward during training
    (dashed, same colour) when it was evaluated."""
    figure, axis = _reward_axes("GRPO reward curves", "reward (weighted sum)")
    for run in runs:
        if run["reward_history"]:
            steps, values = zip(*run["reward_history"], strict=True)
            (line,) = axis.plot(steps, values, linewidth=1.6, label=run["label"])
            if run.get("eval_reward_history"):
                steps, values = zip(*run["eval_reward_history"], strict=True)
                axis.plot(
                    steps, values, linestyle="--", marker="o", color=line.get_color(), label=f"{run['label']} eval"
                )
    # Below the plot, not over the curves: the labels name what sets each run apart and are long.
    figure.set_size_inches(10, 5 + 0.25 * len(axis.get_legend_handles_labels()[1]))
    figure.set_layout_engine("constrained")
    figure.legend(loc="outside lower center", fontsize=8)
    return figure


def completion_samples_html(samples: list[dict[str, Any]]) -> str:
    """A standalone HTML page: one row per sampled completion, with its step and per-reward scores."""
    frame = pd.DataFrame(samples)
    table = frame.to_html(index=False, escape=True, border=0) if not frame.empty else "<p>No samples were kept.</p>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>GRPO completions</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;white-space:pre-wrap}</style></head><body>"
        f"<h1>Sample completions during training</h1><p>{len(samples)} completions.</p>"
        f"{table}</body></html>\n"
    )

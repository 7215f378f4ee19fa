"""Learning and speed of the real-model variants (SmolLM2-135M-Instruct, offline): `kedro run` as a user types it,
one seed after another, each in a throwaway copy of the project (the user's data and MLflow store are untouched).

For every variant and seed it reads what the run recorded: the validation report (held-out greedy and sampled
accuracy of the base model and of the checkpoint reloaded from disk, pass@k, the status of the gates), the
benchmark table (s/step, generated tokens/s) and each node's seconds from MLflow (the share of the wall time
validation took), and prints one Markdown table for benchmarks/RESULTS.md. A seed whose gates fail is a row with
its status, not an error. The weights are rebuilt from the GGUF file by the first run and linked into the later
copies' weights cache (model.from_gguf.weights_cache; the build time is its own column).

    python benchmarks/real_model.py --variants smollm2 smollm2_lora smollm2_tools --seeds 42 1 2

``--keep DIR`` runs the copies in a new folder and keeps them (checkpoints, reports, MLflow store) for a closer look.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from grpo_pipeline.sandbox import copy_project, params_option

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
WEIGHTS_CACHE = "data/06_models/gguf_weights"  # model.from_gguf.weights_cache


def figure(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")


def change(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "-"
    return f"{figure(before)} → {figure(after)} ({figure(after - before, signed=True)})"


def node_seconds(project: Path) -> dict[str, float]:
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    (run,) = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    prefix = "node_seconds/"
    return {key.removeprefix(prefix): value for key, value in run.data.metrics.items() if key.startswith(prefix)}


def run_once(project: Path, variant: str, seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    command = [KEDRO, "run", f"--pipelines=grpo_{variant}", params_option(variant, {"seed": seed, **extra})]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        command, check=False, cwd=project, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    report_path = project / f"data/08_reporting/{variant}/validation_report.json"
    if not report_path.is_file():
        sys.exit(f"{' '.join(command)} wrote no report (exit {result.returncode}):\n{result.stderr[-3000:]}")
    report = json.loads(report_path.read_text())
    bench = pd.read_csv(project / f"data/08_reporting/{variant}/benchmark.csv").iloc[0]
    nodes = node_seconds(project)
    base, trained = report["base"], report["trained"]
    no_samples = {"accuracy": None, "completions_per_prompt": 0}  # validation.sampled_completions: 0
    base_sampled, trained_sampled = base["sampled"] or no_samples, trained["sampled"] or no_samples
    validation = nodes.get(f"{variant}.validate_checkpoint", 0.0)
    return {
        "variant": variant,
        "seed": seed,
        "exit": result.returncode,
        "status": report["status"],
        "greedy_base": base["accuracy"],
        "greedy_trained": trained["accuracy"],
        "sampled_base": base_sampled["accuracy"],
        "sampled_trained": trained_sampled["accuracy"],
        "k": base_sampled["completions_per_prompt"],
        "pass_base": base_sampled.get("pass_at_k"),
        "pass_trained": trained_sampled.get("pass_at_k"),
        "tool_calls_base": (base.get("tool_use") or {}).get("tool_calls_per_completion"),
        "tool_calls_trained": (trained.get("tool_use") or {}).get("tool_calls_per_completion"),
        "eval_prompts": report["eval_prompts"],
        "steps": int(bench["steps"]),
        "wall_s": round(wall, 1),
        "s_per_step": float(bench["s_per_step"]),
        "tokens_per_s": float(bench["generated_tokens_per_s"]),
        "build_s": round(nodes.get(f"{variant}.resolve_base_model", 0.0), 1),
        "warm_start_s": round(nodes.get(f"{variant}.warm_start", 0.0), 1),
        "train_s": round(nodes.get(f"{variant}.train_grpo", 0.0), 1),
        "validation_s": round(validation, 1),
        "validation_share": round(validation / wall, 3),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | seed | greedy base → trained | sampled base → trained | pass@k base → trained "
        "| tool calls/completion (greedy) | status | wall | s/step | gen. tokens/s | validation share |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        tools = (
            f"{figure(row['tool_calls_base'])} → {figure(row['tool_calls_trained'])}"
            if row["tool_calls_base"] is not None
            else "-"
        )
        lines.append(
            f"| {row['variant']} | {row['seed']} "
            f"| {change(row['greedy_base'], row['greedy_trained'])} "
            f"| {change(row['sampled_base'], row['sampled_trained'])} "
            f"| {change(row['pass_base'], row['pass_trained'])} (k={row['k']}) | {tools} | {row['status']} "
            f"| {row['wall_s'] / 60:.1f} min | {row['s_per_step']:.1f} | {row['tokens_per_s']:.0f} "
            f"| {row['validation_share']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["smollm2", "smollm2_lora", "smollm2_tools"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a parameter of every run: training.max_steps=5"
    )
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "real_model.json")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="run the copies in DIR (new) and keep them, checkpoints and MLflow"
    )
    args = parser.parse_args()
    extra = dict(assignment.split("=", 1) for assignment in args.set)
    rows = []
    if args.keep is not None:
        args.keep.mkdir(parents=True)  # a new folder: a finished run in an old one would be resumed, not rerun
    scratch_dir = tempfile.TemporaryDirectory(prefix="grpo-real-model-") if args.keep is None else None
    with scratch_dir or contextlib.nullcontext(str(args.keep)) as scratch:
        cache: Path | None = None
        for variant in args.variants:
            for seed in args.seeds:
                project = copy_project(PROJECT_ROOT, Path(scratch) / f"{variant}-{seed}")
                if cache is not None:
                    shutil.copytree(cache, project / WEIGHTS_CACHE, copy_function=os.link)
                rows.append(run_once(project, variant, seed, extra))
                print(json.dumps(rows[-1]), flush=True)
                cache = project / WEIGHTS_CACHE
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()

"""The seed's three rows through the real pipeline, and the generation paths without vLLM, on one GPU.

Each row is a `kedro run --env=gpu` (MLflow tracking on) of a variant on a randomly initialised model with
LFM2-350M's architecture (no hub needed), in one throwaway project copy, batch 4 x 4 generations of up to
64 new tokens as in the seed:

  debug       grpo_full, 10 steps                          (the seed's "debug 10 steps ~2.5 min" on an A100)
  full        grpo_full, --steps steps                     (the seed's "full 100 steps ~25 min")
  lora        grpo_lora, --steps steps                     (the seed's "LoRA 100 steps ~8 min")
  full/lora + paged, continuous-batching, shipped-rollout:  --path-steps steps each, one generation path
              changed (GRPOConfig.use_transformers_paged, .use_transformers_continuous_batching,
              run.rollout_func)

It writes results.csv / results.md (s/step, generation share, tokens/s, peak GPU memory, MLflow run id,
versions) into --output. `--dry-run` runs the same commands on the CPU with the tiny model and a few
steps, so that no GPU minute is spent on a typo:

    python benchmarks/gpu/seed_rows.py --output /tmp/gpu-rows --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from grpo_pipeline.config.schema import TinyModelParams
from grpo_pipeline.models.lfm2 import ensure_random_lfm2_350m
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.reporting import markdown_table
from grpo_pipeline.sandbox import copy_project, params_option

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SEED_A100_SECONDS = {"debug": 150, "full": 1500, "lora": 480}  # the seed's headline: 2.5 / 25 / 8 minutes
PATHS = {
    "generate": {},
    "paged": {"training.use_transformers_paged": "true"},
    "continuous-batching": {"training.use_transformers_continuous_batching": "true"},
    "shipped-rollout": {"run.rollout_func": "grpo_pipeline.training.rollouts:generate_rollout"},
}
COLUMNS = ["s_per_step", "step_s_median", "generation_share", "generated_tokens_per_s", "peak_gpu_mb"]


def rows(debug_steps: int, steps: int, path_steps: int) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(row, variant, steps, overrides) in the order they run: the seed's three, then the generation paths."""
    planned = [("debug", "full", debug_steps, {}), ("full", "full", steps, {}), ("lora", "lora", steps, {})]
    for path, values in PATHS.items():
        if path != "generate":
            planned += [(f"{variant} {path}", variant, path_steps, values) for variant in ("full", "lora")]
    return planned


def site(dry_run: bool) -> dict[str, Any]:
    """What differs between the GPU run and its CPU dry run."""
    if dry_run:
        return {
            "training.use_cpu": "true",
            "training.bf16": "false",
            "model.dtype": "float32",
            "training.max_completion_length": 8,
        }
    return {"training.max_completion_length": 64}


def run_row(
    project: Path, variant: str, steps: int, values: dict[str, Any], model: Path, dry_run: bool
) -> dict[str, Any]:
    options = {
        "model.name_or_path": model,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 4,
        "training.num_generations": 4,
        "training.use_vllm": "false",
        "training.save_strategy": "no",
        "training.eval_strategy": "no",
        "formatting.max_prompt_length": 64,
        "validation.max_prompts": 8,
        "validation.max_new_tokens": 16,
        **site(dry_run),
        **values,
    }
    # `python -m kedro`: on the GPU machine kedro is a carried wheel on PYTHONPATH, with no script on PATH.
    command = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--env=gpu",
        f"--pipelines=grpo_{variant}",
        params_option(variant, options),
    ]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if result.returncode:
        return {"error": (result.stdout + result.stderr)[-1500:], "kedro_run_s": round(wall, 1)}
    benchmark = pd.read_csv(project / f"data/08_reporting/{variant}/benchmark.csv").iloc[0]
    return {
        **{column: benchmark[column] for column in ["steps", "wall_time_s", *COLUMNS]},
        "kedro_run_s": round(wall, 1),
        "mlflow_run_id": _latest_mlflow_run(project, variant),
    }


def _latest_mlflow_run(project: Path, variant: str) -> str | None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (after kedro has made the store)

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grpo_pipeline")
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"attributes.run_name = 'grpo_{variant}'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def versions() -> dict[str, str]:
    import torch  # noqa: PLC0415

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    packages = {name: version(name) for name in ("torch", "transformers", "trl", "peft", "kedro", "mlflow-skinny")}
    return {"date": time.strftime("%Y-%m-%d"), "device": device, **packages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--path-steps", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="the same commands on the CPU: tiny model, 2 steps")
    args = parser.parse_args()
    debug_steps, steps, path_steps = (2, 2, 2) if args.dry_run else (10, args.steps, args.path_steps)
    args.output.mkdir(parents=True, exist_ok=True)

    table = []
    with tempfile.TemporaryDirectory(prefix="grpo-gpu-rows-") as scratch:
        project = copy_project(PROJECT_ROOT, Path(scratch) / "project")
        model_dir = project / "data/06_models/benchmark_model"
        model = ensure_tiny_model(model_dir, TinyModelParams()) if args.dry_run else ensure_random_lfm2_350m(model_dir)
        for row, variant, row_steps, values in rows(debug_steps, steps, path_steps):
            measured = run_row(project, variant, row_steps, values, model, args.dry_run)
            table.append({"row": row, "variant": variant, **measured, "seed_a100_s": SEED_A100_SECONDS.get(row)})
            print(json.dumps(table[-1], default=str), flush=True)

    frame = pd.DataFrame(table)
    frame.to_csv(args.output / "results.csv", index=False)
    header = versions() | {"dry_run": args.dry_run}
    (args.output / "results.md").write_text(
        "# GPU rows\n\n"
        + "\n".join(f"- {key}: {value}" for key, value in header.items())
        + "\n\n"
        + markdown_table(frame.drop(columns=["error"], errors="ignore"))
        + "\n"
    )
    failed = [row for row in table if "error" in row]
    for row in failed:
        print(f"row {row['row']} failed:\n{row['error']}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""GRPO on a 350M-class model without a hub: grpo_full vs grpo_lora, timed through `kedro run`.

Builds a randomly initialised model with LFM2-350M's architecture (grpo_pipeline/models/lfm2.py),
then runs each variant's prepare -> train -> benchmark nodes on it in a throwaway project copy and
prints the two benchmark rows side by side (s/step, peak RSS, trainable share, ...).

    python benchmarks/lfm2_350m_grpo.py --steps 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from grpo_pipeline.models.lfm2 import ensure_random_lfm2_350m
from grpo_pipeline.reporting import markdown_table
from grpo_pipeline.sandbox import copy_project, params_option

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def overrides(variant: str, model: Path, steps: int, completion_length: int, threads: int) -> str:
    values = {
        "model.name_or_path": model,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 4,
        "training.num_generations": 4,
        "training.max_completion_length": completion_length,
        "training.use_cpu": "true",
        "run.torch_num_threads": threads,
        "training.save_strategy": "no",
        "formatting.max_prompt_length": 64,
    }
    return params_option(variant, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--completion-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "grpo-lfm2-350m-random")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    model = ensure_random_lfm2_350m(args.model_cache)
    rows = []
    with tempfile.TemporaryDirectory(prefix="grpo-lfm2-") as scratch:
        project = copy_project(PROJECT_ROOT, Path(scratch) / "project")
        for variant in ("full", "lora"):
            command = [
                KEDRO,
                "run",
                f"--pipelines=grpo_{variant}",
                f"--to-nodes={variant}.benchmark_run",
                overrides(variant, model, args.steps, args.completion_length, args.threads),
            ]
            env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
            result = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env, check=False)
            if result.returncode:
                sys.exit(f"grpo_{variant} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
            rows.append(pd.read_csv(project / f"data/08_reporting/{variant}/benchmark.csv"))
            print(rows[-1].to_string(index=False), flush=True)

    table = pd.concat(rows, ignore_index=True)
    columns = [
        "mode",
        "steps",
        "s_per_step",
        "step_s_median",
        "generation_share",
        "generated_tokens_per_s",
        "trainable_parameters",
        "total_parameters",
        "trainable_share",
        "peak_rss_mb",
        "peak_gpu_mb",
        "device",
    ]
    summary = (
        f"# GRPO on a random LFM2-350M-architecture model ({args.steps} steps, batch 4 = 1 prompt x 4 "
        f"completions, {args.completion_length} new tokens, {args.threads} CPU threads)\n\n"
        + markdown_table(table[columns])
        + "\n"
    )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "lfm2_350m_cpu.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()

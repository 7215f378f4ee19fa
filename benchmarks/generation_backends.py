"""s/step of grpo_debug's training by generation path and process count, timed through `kedro run`.

Rows, run in rotation in one throwaway project copy so that they share the machine's state:
  trl-generate       GRPOTrainer's own generation (the default)
  shipped-rollout    run.rollout_func = grpo_pipeline.training.rollouts:generate_rollout
  2-processes        distributed.num_processes = 2 (accelerate launch; gloo on a CPU), same global batch
  vllm-colocate      (--vllm, CUDA + the vllm extra only) use_vllm, colocate mode

    python benchmarks/generation_backends.py --steps 40 --repeats 2 [--vllm]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grpo_pipeline.reporting import markdown_table
from grpo_pipeline.sandbox import copy_project, params_option

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
TIMINGS = "data/07_model_output/debug/training_timings.json"


def variants(gpu: bool, with_vllm: bool) -> dict[str, dict[str, Any]]:
    site = {"training.use_cpu": "false", "run.torch_num_threads": "null"} if gpu else {}
    rows = {
        "trl-generate": site,
        "shipped-rollout": {**site, "run.rollout_func": "grpo_pipeline.training.rollouts:generate_rollout"},
        "2-processes": {**site, "distributed.num_processes": 2, "training.per_device_train_batch_size": 16},
    }
    if with_vllm:
        rows["vllm-colocate"] = {**site, "training.use_vllm": "true", "training.vllm_gpu_memory_utilization": 0.2}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="train on CUDA instead of the CPU")
    parser.add_argument("--vllm", action="store_true", help="add vLLM colocate (implies --gpu)")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    rows = variants(args.gpu or args.vllm, args.vllm)
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory(prefix="grpo-generation-") as scratch:
        project = copy_project(PROJECT_ROOT, Path(scratch) / "project")
        for repeat in range(args.repeats):
            for name, values in rows.items():
                options = {"training.max_steps": args.steps, "training.save_strategy": "no", **values}
                command = [KEDRO, "run", "--pipelines=grpo_debug", params_option("debug", options)]
                result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    sys.exit(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
                measured[name].append(json.loads((project / TIMINGS).read_text()))
                print(f"repeat {repeat + 1} {name}: {measured[name][-1]['step_seconds_median']:.3f} s/step", flush=True)

    baseline = np.median([run["step_seconds_median"] for run in measured["trl-generate"]])
    table = pd.DataFrame(
        [
            {
                "row": name,
                "processes": runs[0]["world_size"],
                "s/step (median of runs)": round(float(np.median([run["step_seconds_median"] for run in runs])), 4),
                "vs trl-generate": round(float(np.median([run["step_seconds_median"] for run in runs]) / baseline), 3),
                "generation share": round(float(np.median([run["shares"]["generation"] for run in runs])), 3),
                "train wall s": round(float(np.median([run["train_wall_seconds"] for run in runs])), 2),
            }
            for name, runs in measured.items()
        ]
    )
    args.output.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output / "generation_backends.csv", index=False)
    print(markdown_table(table))


if __name__ == "__main__":
    main()

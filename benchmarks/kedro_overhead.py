"""What does running GRPO through Kedro cost over a bare TRL script?

Runs a variant's GRPO config (debug's by default) both ways in one invocation, alternating, in throwaway
copies of the project (the user's data and MLflow store are untouched):

- bare:   ``python benchmarks/bare_trl_grpo.py`` (prepare prompts, template, train, save; no tracking)
- bare+mlflow: the same with TRL's own MLflow integration, to a SQLite store like the project's
- kedro:  ``kedro run --pipelines=grpo_<variant> --to-nodes=<variant>.train_grpo`` (the same work as nodes,
  plus catalog I/O and MLflow tracking of parameters and per-step metrics through kedro-mlflow)

kedro / bare+mlflow is what Kedro itself costs; kedro / bare adds the price of tracking.

Both are timed as whole processes, imports included, after one untimed warm-up each, and the ratio
of medians is printed and written to ``benchmarks/results/``.

    python benchmarks/kedro_overhead.py --repeats 3 --max-steps 80
    python benchmarks/kedro_overhead.py --variant smollm2 --prompts data/01_raw/small_arithmetic_prompts.jsonl \
        --repeats 3 --max-steps 10        # the real model (SmolLM2-135M-Instruct)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from grpo_pipeline.sandbox import copy_project, timed_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="debug")
    parser.add_argument("--prompts", default=None, help="the variant's raw prompts file, when not debug's")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the variant's max_steps")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    bare = [
        sys.executable,
        str(PROJECT_ROOT / "benchmarks" / "bare_trl_grpo.py"),
        "--project",
        ".",
        "--output",
        "bare_output",
        "--variant",
        args.variant,
        *(["--prompts", args.prompts] if args.prompts else []),
    ]
    # The bare script's work: no warm start, no evaluation during training.
    variant = args.variant
    same_work = f"{variant}.warm_start=null,{variant}.training.eval_strategy=no,{variant}.training.eval_on_start=false"
    kedro = [str(BIN / "kedro"), "run", f"--pipelines=grpo_{variant}", f"--to-nodes={variant}.train_grpo"]
    if args.max_steps is not None:
        bare += ["--max-steps", str(args.max_steps)]
        same_work += f",{variant}.training.max_steps={args.max_steps}"
    kedro += [f"--params={same_work}"]
    times: dict[str, list[float]] = {"bare": [], "bare+mlflow": [], "kedro": []}
    with tempfile.TemporaryDirectory(prefix="grpo-overhead-") as scratch:
        tracked = copy_project(PROJECT_ROOT, Path(scratch) / "bare-mlflow")
        sides = [
            ("bare", bare, copy_project(PROJECT_ROOT, Path(scratch) / "bare")),
            ("bare+mlflow", [*bare, "--mlflow-uri", f"sqlite:///{tracked / 'mlflow.db'}"], tracked),
            ("kedro", kedro, copy_project(PROJECT_ROOT, Path(scratch) / "kedro")),
        ]
        # One untimed warm-up each: it builds the base model and creates the MLflow SQLite store,
        # one-off costs of a new project rather than of a run.
        for name, command, cwd in sides:
            print(f"warm-up {name:11s} {timed_run(command, cwd):6.2f} s (not counted)", flush=True)
        for repeat in range(args.repeats):
            # Rotate the order so that no side always runs first or last.
            for name, command, cwd in sides[repeat % 3 :] + sides[: repeat % 3]:
                times[name].append(timed_run(command, cwd))
                print(f"repeat {repeat + 1}/{args.repeats} {name:11s} {times[name][-1]:6.2f} s", flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "variant": variant,
        "max_steps": args.max_steps,
        "repeats": args.repeats,
        "seconds": times,
        "median_s": {name: round(value, 2) for name, value in medians.items()},
        "ratio_kedro_to_bare_mlflow": round(medians["kedro"] / medians["bare+mlflow"], 3),
        "ratio_kedro_to_bare": round(medians["kedro"] / medians["bare"], 3),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    label = f"steps{args.max_steps}" if args.max_steps is not None else "default"
    label = label if variant == "debug" else f"{variant}_{label}"
    (args.output / f"kedro_overhead_{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        " | ".join(f"{name} median {value:.2f} s" for name, value in medians.items())
        + f"\nkedro / bare+mlflow = {result['ratio_kedro_to_bare_mlflow']:.3f} (Kedro's own overhead)"
        + f"\nkedro / bare        = {result['ratio_kedro_to_bare']:.3f} (Kedro and tracking)"
    )


if __name__ == "__main__":
    main()

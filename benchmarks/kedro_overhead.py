"""What does running GRPO through Kedro cost over a bare TRL script?

Runs a variant's GRPO config (debug's by default) both ways in one invocation, alternating, in throwaway
copies of the project (the user's data and MLflow store are untouched):

- bare:   ``python benchmarks/bare_trl_grpo.py`` (prepare prompts, template, train, save; no tracking)
- bare+mlflow: the same with TRL's own MLflow integration, to a SQLite store like the project's
- kedro:  ``kedro run --pipelines=grpo_<variant> --to-nodes=<variant>.train_grpo`` (the same work as nodes,
  plus catalog I/O and MLflow tracking of parameters and per-step metrics through kedro-mlflow)

kedro / bare+mlflow is what Kedro itself costs; kedro / bare adds the price of tracking.

Each is timed as a whole process, imports included, after one untimed warm-up of one step each, and the
ratio of medians is printed and written to ``benchmarks/results/``. ``--sides bare kedro`` times two of the
three, for a long run.

    python benchmarks/kedro_overhead.py --repeats 3 --max-steps 80
    python benchmarks/kedro_overhead.py --variant smollm2 --prompts data/01_raw/small_arithmetic_prompts.jsonl \
        --repeats 2 --max-steps 30 --sides bare kedro   # the real model (SmolLM2-135M-Instruct)
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
SIDES = ("bare", "bare+mlflow", "kedro")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="debug")
    parser.add_argument("--prompts", default=None, help="the variant's raw prompts file, when not debug's")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the variant's max_steps")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=list(SIDES), help="which ways to time (default: all three)"
    )
    args = parser.parse_args()
    variant = args.variant

    def commands(max_steps: int | None) -> dict[str, list[str]]:
        """Each side's command line, training ``max_steps`` steps (None: the variant's)."""
        bare = [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "bare_trl_grpo.py"),
            "--project",
            ".",
            "--output",
            "bare_output",
            "--variant",
            variant,
            *(["--prompts", args.prompts] if args.prompts else []),
            *(["--max-steps", str(max_steps)] if max_steps is not None else []),
        ]
        # The bare script's work: no warm start, no evaluation during training.
        same_work = (
            f"{variant}.warm_start=null,{variant}.training.eval_strategy=no,{variant}.training.eval_on_start=false"
        )
        if max_steps is not None:
            same_work += f",{variant}.training.max_steps={max_steps}"
        kedro = [str(BIN / "kedro"), "run", f"--pipelines=grpo_{variant}", f"--to-nodes={variant}.train_grpo"]
        tracked = ["--mlflow-uri", "sqlite:///mlflow.db"]
        return {"bare": bare, "bare+mlflow": [*bare, *tracked], "kedro": [*kedro, f"--params={same_work}"]}

    times: dict[str, list[float]] = {name: [] for name in args.sides}
    with tempfile.TemporaryDirectory(prefix="grpo-overhead-") as scratch:
        projects = {name: copy_project(PROJECT_ROOT, Path(scratch) / name.replace("+", "-")) for name in args.sides}
        # One untimed warm-up each, of one step: it builds the base model and creates the MLflow SQLite store,
        # one-off costs of a new project rather than of a run (a finished run is not resumed: the next starts anew).
        for name, command in commands(1).items():
            if name in projects:
                print(f"warm-up {name:11s} {timed_run(command, projects[name]):6.2f} s (not counted)", flush=True)
        timed = [(name, command) for name, command in commands(args.max_steps).items() if name in projects]
        for repeat in range(args.repeats):
            # Rotate the order so that no side always runs first or last.
            shift = repeat % len(timed)
            for name, command in timed[shift:] + timed[:shift]:
                times[name].append(timed_run(command, projects[name]))
                print(f"repeat {repeat + 1}/{args.repeats} {name:11s} {times[name][-1]:6.2f} s", flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {
        f"ratio_kedro_to_{other.replace('+', '_')}": round(medians["kedro"] / medians[other], 3)
        for other in ("bare+mlflow", "bare")
        if "kedro" in medians and other in medians
    }
    result = {
        "variant": variant,
        "max_steps": args.max_steps,
        "repeats": args.repeats,
        "seconds": times,
        "median_s": {name: round(value, 2) for name, value in medians.items()},
        **ratios,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    label = f"steps{args.max_steps}" if args.max_steps is not None else "default"
    label = label if variant == "debug" else f"{variant}_{label}"
    (args.output / f"kedro_overhead_{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(" | ".join(f"{name} median {value:.2f} s" for name, value in medians.items()))
    if "ratio_kedro_to_bare_mlflow" in result:
        print(f"kedro / bare+mlflow = {result['ratio_kedro_to_bare_mlflow']:.3f} (Kedro's own overhead)")
    if "ratio_kedro_to_bare" in result:
        print(f"kedro / bare        = {result['ratio_kedro_to_bare']:.3f} (Kedro and tracking)")


if __name__ == "__main__":
    main()

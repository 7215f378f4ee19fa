"""Start-up cost of the project at two commits: ``kedro registry list`` and ``kedro run --pipelines=grpo_debug``.

Each commit is exported (``git archive``) into its own throwaway project, so both run against the same
virtual environment and each imports its own ``src/`` (Kedro puts the project's ``src`` first on the
path). The two are alternated command by command, the order rotating per repeat, after one untimed
warm-up each (it builds the tiny model and the MLflow store, one-off costs of a new project), and the
medians are printed with their ratio and written to ``benchmarks/results/startup.json``.

    python benchmarks/startup.py --before f5d8418 --after HEAD --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from grpo_pipeline.sandbox import timed_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
COMMANDS = {
    "registry list": [KEDRO, "registry", "list"],
    "run grpo_debug": [KEDRO, "run", "--pipelines=grpo_debug"],
}


def export_commit(commit: str, destination: Path) -> Path:
    """The project as it was at ``commit``, with its outputs empty, in ``destination``."""
    archive = subprocess.run(["git", "archive", commit], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    (destination / "conf" / "local").mkdir(parents=True, exist_ok=True)
    return destination


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="a commit, e.g. the one before a change")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    labels = {"before": args.before, "after": args.after}
    times: dict[str, dict[str, list[float]]] = {command: {side: [] for side in labels} for command in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="grpo-startup-") as scratch:
        projects = {side: export_commit(commit, Path(scratch) / side) for side, commit in labels.items()}
        for side, project in projects.items():
            print(f"warm-up {side}: {timed_run(COMMANDS['run grpo_debug'], project):.2f} s (not counted)", flush=True)
        sides = list(labels)
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for command_name, command in COMMANDS.items():
                for side in order:
                    times[command_name][side].append(timed_run(command, projects[side]))
                    print(
                        f"repeat {repeat + 1}/{args.repeats} {command_name:15s} {side:6s} "
                        f"{times[command_name][side][-1]:6.2f} s",
                        flush=True,
                    )

    result = {
        "commits": labels,
        "repeats": args.repeats,
        "seconds": times,
        "median_s": {
            command: {side: round(statistics.median(values), 2) for side, values in by_side.items()}
            for command, by_side in times.items()
        },
    }
    for command, medians in result["median_s"].items():
        medians["after_to_before"] = round(medians["after"] / medians["before"], 3)
        print(
            f"{command:15s} median before {medians['before']:.2f} s, after {medians['after']:.2f} s "
            f"(after / before = {medians['after_to_before']:.3f})"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""How many prompts validation hands the trainer per generation call (``evaluation.PROMPTS_PER_CALL``), measured on
a finished run: the validation of a kept project copy (``real_model.py --keep DIR``) timed at each size, in one
process, rotating, with the held-out figures of each (a size must not change them).

    python benchmarks/validation_batch.py DIR/smollm2_tools-42 smollm2_tools --sizes 32 128 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from grpo_pipeline import evaluation
from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.run_config import resolve_run_config
from grpo_pipeline.io.checkpoint_dataset import HFCheckpointDataset
from grpo_pipeline.reporting import markdown_table
from grpo_pipeline.validation import validate_against_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("project", type=Path)
    parser.add_argument("variant")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.chdir(args.project)
    config = resolve_run_config(load_parameters("conf", "base")[args.variant], args.variant)
    saved = json.loads(Path(f"data/08_reporting/{args.variant}/validation_report.json").read_text())
    eval_dataset = pd.read_json(f"data/03_primary/{args.variant}/eval_dataset.jsonl", lines=True, dtype=False)
    checkpoint = HFCheckpointDataset(path=f"data/06_models/{args.variant}/checkpoint").load()
    rows = []
    for round_ in range(args.rounds):
        for size in args.sizes:
            evaluation.PROMPTS_PER_CALL = size
            started = time.perf_counter()
            report = validate_against_base(checkpoint, saved["base_model"], eval_dataset, config).to_dict()
            report = json.loads(json.dumps(report, default=str))  # as the run saved it
            same = all(report[model] == saved[model] for model in ("base", "trained"))
            rows.append(
                {
                    "round": round_ + 1,
                    "prompts per call": size,
                    "seconds": round(time.perf_counter() - started, 1),
                    "greedy base → trained": f"{report['base']['accuracy']:.3f} → {report['trained']['accuracy']:.3f}",
                    "same figures as the run": same,
                }
            )
            print(rows[-1], flush=True)
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()

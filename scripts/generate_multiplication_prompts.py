"""Generate the task of the ``grpo_tools`` variant: the product of a 2-3 digit and a 2 digit number.

Run from the project root (the output is committed; rerunning with the same seed reproduces it):

    python scripts/generate_multiplication_prompts.py --seed 0

The tiny model cannot multiply in its head; with the calculator tool (grpo_pipeline/calculator.py) it only
has to call ``multiply`` with the two numbers and repeat the result. Each row holds the question, the exact
product (``answer``) and ``trace``, the solved tool-call conversation the warm start learns from: the call,
the tool's answer, the final reply. The pipeline splits the rows into training and held-out problems, and
the warm start uses the training ones only.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def solved_trace(a: int, b: int) -> list[dict[str, object]]:
    """The conversation that solves ``a * b`` with the calculator, as a chat template renders tool calls."""
    call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": a, "b": b}}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "multiply", "content": str(a * b)},
        {"role": "assistant", "content": str(a * b)},
    ]


def generate_rows(seed: int, rows: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < rows:
        pairs.add((rng.randint(10, 999), rng.randint(10, 99)))
    return [
        {"prompt": f"What is {a} * {b}?", "answer": str(a * b), "trace": solved_trace(a, b)}
        for a, b in sorted(pairs, key=lambda _: rng.random())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("data/01_raw/multiplication_prompts.jsonl"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_rows(args.seed, args.rows)
    with args.output.open("w", encoding="utf-8") as handle:
        for record in rows:
            handle.write(json.dumps(record) + "\n")
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()

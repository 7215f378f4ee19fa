"""Generate the shipped default task: name the largest of three digits.

Run from the project root (the output is committed; rerunning with the same seed reproduces it):

    python scripts/generate_largest_digit_prompts.py --seed 0

Every ordered triple of digits is one problem, so the file holds all 1,000 distinct problems, each
once, worded by one of a few templates; the pipeline splits them into training and held-out problems,
so the held-out ones are never trained on. About a fifth of the rows carry the prompt as plain text,
the rest as chat messages, because the pipeline accepts both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

TEMPLATES = (
    "Which is the largest of {a}, {b} and {c}?",
    "What is max({a}, {b}, {c})?",
    "Largest of {a} {b} {c}?",
)


def generate_rows(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    records = []
    for a, b, c in itertools.product(range(10), repeat=3):
        question = rng.choice(TEMPLATES).format(a=a, b=b, c=c)
        prompt: object = question if rng.random() < 0.2 else [{"role": "user", "content": question}]
        records.append({"prompt": prompt, "answer": str(max(a, b, c))})
    rng.shuffle(records)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("data/01_raw/largest_digit_prompts.jsonl"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_rows(args.seed)
    with args.output.open("w", encoding="utf-8") as handle:
        for record in rows:
            handle.write(json.dumps(record) + "\n")
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()

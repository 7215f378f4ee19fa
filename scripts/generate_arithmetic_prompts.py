"""Generate the shipped task: small integer arithmetic with answers a function can check.

Run from the project root (the output is committed; rerunning with the same seed reproduces it):

    python scripts/generate_arithmetic_prompts.py --rows 3000 --seed 0 \
        --output data/01_raw/arithmetic_prompts.jsonl

Rows are sampled with replacement, so the file holds some duplicate problems, as scraped or
generated prompt sets do; the prompt-preparation node removes them. About a fifth of the rows carry
the prompt as plain text, the rest as chat messages, because the pipeline accepts both.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")


def generate_rows(rows: int, seed: int, max_operand: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        op = rng.choice("+-")
        question = rng.choice(TEMPLATES).format(a=a, op=op, b=b)
        answer = a + b if op == "+" else a - b
        prompt: object = question if rng.random() < 0.2 else [{"role": "user", "content": question}]
        records.append({"prompt": prompt, "answer": str(answer)})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-operand", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path("data/01_raw/arithmetic_prompts.jsonl"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        for record in generate_rows(args.rows, args.seed, args.max_operand):
            handle.write(json.dumps(record) + "\n")
    print(f"wrote {args.rows} rows to {args.output}")


if __name__ == "__main__":
    main()

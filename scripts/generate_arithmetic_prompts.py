"""Generate the shipped arithmetic tasks: small integer arithmetic with answers a function can check.

Run from the project root (the outputs are committed; rerunning with the same arguments reproduces them):

    python scripts/generate_arithmetic_prompts.py --rows 3000 --seed 0 \
        --output data/01_raw/arithmetic_prompts.jsonl
    python scripts/generate_arithmetic_prompts.py --rows 3000 --seed 0 --max-operand 12 --ops "+-*" \
        --text-share 0 --template "What is {a} {op} {b}?" --output data/01_raw/small_arithmetic_prompts.jsonl

Rows are sampled with replacement, so the file holds some duplicate problems, as scraped or
generated prompt sets do; the prompt-preparation node removes them. By default about a fifth of the
rows carry the prompt as plain text, the rest as chat messages, because the pipeline accepts both.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")


OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def generate_rows(
    rows: int,
    seed: int,
    max_operand: int,
    ops: str = "+-",
    text_share: float = 0.2,
    templates: tuple[str, ...] = TEMPLATES,
) -> list[dict[str, object]]:
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        op = rng.choice(ops)
        question = rng.choice(templates).format(a=a, op=op, b=b)
        answer = OPERATIONS[op](a, b)
        prompt: object = question if rng.random() < text_share else [{"role": "user", "content": question}]
        records.append({"prompt": prompt, "answer": str(answer)})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-operand", type=int, default=20)
    parser.add_argument("--ops", default="+-", help="the operators drawn from: any of + - *")
    parser.add_argument("--text-share", type=float, default=0.2, help="share of rows whose prompt is plain text")
    parser.add_argument("--template", action="append", help="a question with {a}, {op} and {b}; repeat for several")
    parser.add_argument("--output", type=Path, default=Path("data/01_raw/arithmetic_prompts.jsonl"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        templates = tuple(args.template) if args.template else TEMPLATES
        for record in generate_rows(args.rows, args.seed, args.max_operand, args.ops, args.text_share, templates):
            handle.write(json.dumps(record) + "\n")
    print(f"wrote {args.rows} rows to {args.output}")


if __name__ == "__main__":
    main()

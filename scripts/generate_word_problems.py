"""Generate the shipped reasoning task: GSM8K-shaped word problems, offline and seeded.

Run from the project root (the output is committed; rerunning with the same seed reproduces it):

    python scripts/generate_word_problems.py --problems 1200 --test 200 --seed 0 \
        --output data/01_raw/word_problems

Each split (``train.parquet``, ``test.parquet``) has GSM8K's columns: ``question`` and ``answer``, the
answer being worked steps with ``<<a+b=c>>`` calculator notes and a final ``#### n`` line, so the same
parameters read this copy and ``openai/gsm8k``. A third column, ``reference_completion``, is the
solution in the format the reasoning rewards ask for (``<think>steps</think>`` then ``\\boxed{n}``).
No problem appears in both splits.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd

NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Isla", "Jonas", "Kira", "Liam", "Mia", "Noah")
ITEMS = ("apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "books")

Problem = tuple[str, list[str], int]


def _buys_more(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    have, bought = rng.randint(2, 40), rng.randint(2, 30)
    question = f"{name} has {have} {item} and buys {bought} more. How many {item} does {name} have now?"
    return (
        question,
        [f"{name} has {have} + {bought} = <<{have}+{bought}={have + bought}>>{have + bought} {item}."],
        have + bought,
    )


def _gives_away(rng: random.Random) -> Problem:
    name, friend, item = *rng.sample(NAMES, 2), rng.choice(ITEMS)
    have = rng.randint(10, 60)
    given = rng.randint(1, have - 1)
    question = f"{name} had {have} {item} and gave {given} to {friend}. How many {item} does {name} have left?"
    return (
        question,
        [f"{name} has {have} - {given} = <<{have}-{given}={have - given}>>{have - given} {item} left."],
        have - given,
    )


def _price_times_count(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    count, price = rng.randint(2, 12), rng.randint(2, 15)
    total = count * price
    question = f"{name} buys {count} packs of {item}. Each pack costs ${price}. How many dollars does {name} spend?"
    return question, [f"{count} packs cost {count} * {price} = <<{count}*{price}={total}>>{total} dollars."], total


def _shared_equally(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    question = f"{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?"
    return question, [f"Each friend gets {total} / {friends} = <<{total}/{friends}={each}>>{each} {item}."], each


def _two_steps(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    boxes, per_box, eaten = rng.randint(2, 8), rng.randint(3, 12), rng.randint(1, 10)
    total = boxes * per_box
    eaten = min(eaten, total - 1)
    question = (
        f"{name} has {boxes} boxes with {per_box} {item} in each box and then loses {eaten} of them. "
        f"How many {item} does {name} have?"
    )
    steps = [
        f"The boxes hold {boxes} * {per_box} = <<{boxes}*{per_box}={total}>>{total} {item}.",
        f"After losing {eaten}, {name} has {total} - {eaten} = <<{total}-{eaten}={total - eaten}>>{total - eaten}.",
    ]
    return question, steps, total - eaten


KINDS: tuple[Callable[[random.Random], Problem], ...] = (
    _buys_more,
    _gives_away,
    _price_times_count,
    _shared_equally,
    _two_steps,
)


def generate_problems(count: int, seed: int) -> pd.DataFrame:
    """``count`` distinct problems with GSM8K's ``question``/``answer`` and a ``reference_completion``."""
    rng = random.Random(seed)
    rows: dict[str, dict[str, str]] = {}
    while len(rows) < count:
        question, steps, answer = rng.choice(KINDS)(rng)
        plain_steps = [step.split("<<")[0] + step.split(">>")[1] if "<<" in step else step for step in steps]
        rows.setdefault(
            question,
            {
                "question": question,
                "answer": "\n".join(steps) + f"\n#### {answer}",
                "reference_completion": "<think>\n" + "\n".join(plain_steps) + f"\n</think>\n\\boxed{{{answer}}}",
            },
        )
    return pd.DataFrame(list(rows.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=1200)
    parser.add_argument("--test", type=int, default=200, help="problems in the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("data/01_raw/word_problems"))
    args = parser.parse_args()
    problems = generate_problems(args.problems, args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    problems.iloc[args.test :].to_parquet(args.output / "train.parquet", index=False)
    problems.iloc[: args.test].to_parquet(args.output / "test.parquet", index=False)
    print(f"wrote {len(problems) - args.test} train and {args.test} test problems to {args.output}")


if __name__ == "__main__":
    main()

"""The debug variant's GRPO run as a bare TRL script, in the style of ``trl/scripts/grpo.py``: no Kedro,
no MLflow. It reads the same raw prompts and parameter file and does the same work as the pipeline's
prepare, format and train nodes (normalise, de-duplicate, split, template, drop long prompts, train,
save), so that ``kedro_overhead.py`` can compare the two.

    python benchmarks/bare_trl_grpo.py --project . --output /tmp/bare --max-steps 80
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
import yaml
from datasets import Dataset, load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from grpo_pipeline.models.tiny import TinyModelSpec, ensure_tiny_model
from grpo_pipeline.rewards import REWARD_FUNCTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path())
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    params = yaml.safe_load((args.project / "conf/base/debug/parameters.yml").read_text())["debug"]
    training = dict(params["training"])
    torch.set_num_threads(training.pop("torch_num_threads") or torch.get_num_threads())
    training.update(training.pop("grpo_config_overrides"))
    training["output_dir"] = str(args.output / "trainer_output")
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps

    raw = load_dataset("json", data_files=str(args.project / "data/01_raw/arithmetic_prompts.jsonl"), split="train")
    seen, rows = set(), []
    for record in raw:
        prompt = record["prompt"]
        messages = [{"role": "user", "content": prompt.strip()}] if isinstance(prompt, str) else prompt
        key = json.dumps(messages) + record["answer"]
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": messages, "answer": record["answer"]})
    random.Random(params["seed"]).shuffle(rows)
    train_rows = rows[params["data"]["eval_size"] :]

    model_dir = ensure_tiny_model(args.output / "base_model", TinyModelSpec(**params["model"]["build_tiny"]))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
    limit = params["formatting"]["max_prompt_length"]
    train_rows = [
        row
        for row in train_rows
        if len(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"])
        <= limit
    ]
    weights = params["reward"]["weights"]
    config = GRPOConfig(
        **training,
        seed=params["seed"],
        report_to="none",
        reward_weights=[weight / sum(weights) for weight in weights],
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[REWARD_FUNCTIONS[name] for name in params["reward"]["functions"]],
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
    )
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    trainer.save_model(str(args.output / "checkpoint"))
    tokenizer.save_pretrained(args.output / "checkpoint")
    print(
        json.dumps(
            {
                "steps": trainer.state.global_step,
                "train_seconds": train_seconds,
                "script_seconds": time.perf_counter() - started,
            }
        )
    )


if __name__ == "__main__":
    main()

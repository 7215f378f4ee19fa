"""A variant's GRPO run as a bare TRL script, in the style of ``trl/scripts/grpo.py``: no Kedro, no MLflow.

It reads the same raw prompts and parameter files as the pipeline and does the work of its prepare,
format and train nodes (normalise, de-duplicate, split, template, drop long prompts, train, save). It
trains from the variant's base model (no warm start) and evaluates nothing during training: it times
the trainer.
Two uses:

- ``kedro_overhead.py`` compares it with ``kedro run`` on the debug variant;
- on a machine without Kedro/MLflow (the lent GPU machine), it times the seed's rows:

    python benchmarks/bare_trl_grpo.py --output /tmp/bare --variant debug --max-steps 80
    python benchmarks/bare_trl_grpo.py --output /tmp/full --variant full --env gpu --random-lfm2-350m --max-steps 100
    python benchmarks/bare_trl_grpo.py --output /tmp/smollm2 --variant smollm2 --max-steps 5 \
        --prompts data/01_raw/small_arithmetic_prompts.jsonl

It prints one JSON line: steps, wall times, s/step, trainable parameters and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from datasets import Dataset, load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.schema import GGUFModelParams, TinyModelParams
from grpo_pipeline.models.gguf import ensure_gguf_model
from grpo_pipeline.models.tiny import ensure_tiny_model
from grpo_pipeline.rewards import REWARD_FUNCTIONS
from grpo_pipeline.runtime import configure_runtime
from grpo_pipeline.variants import DEFAULT_VARIANT, unknown_variant


def variant_params(project: Path, variant: str, env: str | None) -> dict[str, Any]:
    """The variant's effective parameters, read as `kedro run` reads them (defaults, environment)."""
    return load_parameters(project / "conf", env)[variant]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path())
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="a variant found in the project's conf/")
    parser.add_argument("--env", default=None, help="a Kedro environment whose parameters apply on top, e.g. gpu")
    parser.add_argument("--model", default=None, help="model path or id instead of the variant's")
    parser.add_argument("--random-lfm2-350m", action="store_true", help="build and use a random LFM2-350M")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--prompts", type=Path, default=Path("data/01_raw/largest_digit_prompts.jsonl"))
    parser.add_argument(
        "--mlflow-uri", default=None, help="track with TRL's own MLflow integration (report_to=mlflow) at this URI"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one parameter, e.g. training.per_device_train_batch_size=4 (value parsed as YAML)",
    )
    args = parser.parse_args()
    if problem := unknown_variant(args.variant, args.project / "conf"):
        parser.error(problem)
    started = time.perf_counter()
    configure_runtime()

    params = variant_params(args.project, args.variant, args.env)
    for assignment in args.set:
        dotted, value = assignment.split("=", 1)
        section, key = dotted.split(".", 1)
        params[section][key] = yaml.safe_load(value)
    training = dict(params["training"])
    if params["run"].get("torch_num_threads"):
        torch.set_num_threads(params["run"]["torch_num_threads"])
    training["output_dir"] = str(args.output / "trainer_output")
    training |= {"eval_strategy": "no", "eval_on_start": False}
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps

    raw = load_dataset("json", data_files=str(args.project / args.prompts), split="train")
    seen, rows = set(), []
    for record in raw:
        prompt = record["prompt"]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt.strip()}]
        else:
            messages = [{"role": message["role"], "content": message["content"].strip()} for message in prompt]
        if params["data"].get("system_prompt") and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": params["data"]["system_prompt"].strip()}, *messages]
        key = json.dumps(messages) + "\x00" + record["answer"]
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": messages, "answer": record["answer"]})
    # The same seeded split as the prepare_prompts node, so both runs train on the same prompts in order.
    order = np.random.default_rng(params["seed"]).permutation(len(rows))
    train_rows = [rows[index] for index in order[params["data"]["eval_size"] :]]

    if args.random_lfm2_350m:
        from grpo_pipeline.models.lfm2 import ensure_random_lfm2_350m  # noqa: PLC0415 (only this mode needs LFM2)

        model_path: str | Path = ensure_random_lfm2_350m(args.output / "lfm2-350m-random")
    elif args.model:
        model_path = args.model
    elif params["model"].get("from_gguf"):
        model_path = ensure_gguf_model(args.output / "base_model", GGUFModelParams(**params["model"]["from_gguf"]))
    elif params["model"].get("build_tiny"):
        model_path = ensure_tiny_model(args.output / "base_model", TinyModelParams(**params["model"]["build_tiny"]))
    else:
        model_path = params["model"]["name_or_path"]
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[params["model"]["dtype"]]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, use_safetensors=True)
    limit = params["formatting"]["max_prompt_length"]
    train_rows = [
        row
        for row in train_rows
        if len(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"])
        <= limit
    ]
    peft = params.get("peft")
    peft_config = None
    if peft:
        peft_config = LoraConfig(
            r=peft["r"],
            lora_alpha=peft["lora_alpha"],
            lora_dropout=peft["lora_dropout"],
            target_modules=peft["target_modules"],
            bias=peft["bias"],
            task_type="CAUSAL_LM",
        )

    if args.mlflow_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.mlflow_uri
        os.environ["MLFLOW_EXPERIMENT_NAME"] = "bare_trl_grpo"
    weights = params["reward"]["weights"] or [1.0] * len(params["reward"]["functions"])
    config = GRPOConfig(
        **training,
        seed=params["seed"],
        data_seed=params["seed"],
        report_to="mlflow" if args.mlflow_uri else "none",
        reward_weights=weights,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[REWARD_FUNCTIONS[name] for name in params["reward"]["functions"]],
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    trainer.save_model(str(args.output / "checkpoint"))
    tokenizer.save_pretrained(args.output / "checkpoint")
    steps = trainer.state.global_step
    print(
        json.dumps(
            {
                "variant": args.variant,
                "model": str(model_path),
                "steps": steps,
                "train_seconds": round(train_seconds, 2),
                "s_per_step": round(train_seconds / max(steps, 1), 4),
                "script_seconds": round(time.perf_counter() - started, 2),
                "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                "total_parameters": sum(p.numel() for p in trainer.model.parameters()),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
                if torch.cuda.is_available()
                else None,
                "device": str(trainer.accelerator.device),
                "batch": training["per_device_train_batch_size"],
                "num_generations": training["num_generations"],
                "max_completion_length": training["max_completion_length"],
            }
        )
    )


if __name__ == "__main__":
    main()

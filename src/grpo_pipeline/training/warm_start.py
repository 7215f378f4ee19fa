"""A short supervised warm start before GRPO: ``trl.SFTTrainer`` on the training split's solved examples.

GRPO reinforces what the policy already samples, so a model that never samples a correct answer (such as
the randomly initialised tiny model the project builds) gives it nothing to reinforce. A few supervised
steps on solved training examples (never held-out ones) give it partial skill for GRPO to sharpen. The
model is written to ``warm_start.output_dir`` with a fingerprint of everything that made it, and a rerun
whose fingerprint matches reuses it instead of training again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset
from trl import SFTTrainer
from trl.data_utils import is_conversational

from grpo_pipeline.chat_template import render, training_chat_template
from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.config.schema import ModelParams, WarmStartParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.fingerprinted import ensure_artifact, read_record
from grpo_pipeline.models.loading import load_tokenizer
from grpo_pipeline.tools import ToolSet
from grpo_pipeline.training.fingerprint import data_sha256, model_identity, package_versions
from grpo_pipeline.training.trainer import use_quiet_progress_bar

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "warm_start_fingerprint.json"


def _solved_completion(value: str, conversational: bool) -> Any:
    """A solved completion as SFTTrainer takes it: chat messages when the column holds them as JSON (a tool-call
    trace: the calls, the tools' answers, the final reply), else the text, as an assistant message for chat."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m for m in parsed):
        return parsed
    return [{"role": "assistant", "content": value}] if conversational else value


def solved_examples(
    train_dataset: pd.DataFrame, completion_column: str, tokenizer: Any = None, tools: ToolSet | None = None
) -> pd.DataFrame:
    """Prompt-completion pairs as SFTTrainer takes them: the completion an assistant message (or the messages of a
    solved trace) when the prompt is a conversation, plain text otherwise.

    With tools (``tokenizer`` needed) each example is tokenized as GRPOTrainer tokenizes a rollout: the prompt with
    the descriptions of the tools its row is offered, each turn with the trainer's chat template. Only the model's
    own turns are learned (``assistant_masks``): the tools' answers are read, not predicted, as in GRPO's loss."""
    prompts = train_dataset["prompt"].tolist()
    conversational = bool(prompts) and is_conversational({"prompt": prompts[0]})
    completions = [_solved_completion(value, conversational) for value in train_dataset[completion_column].astype(str)]
    if tools is None or not tools.active:
        return pd.DataFrame({"prompt": prompts, "completion": completions})
    chat_template = training_chat_template(tokenizer, tools=True)
    rows = []
    for prompt, completion, row in zip(prompts, completions, train_dataset.to_dict(orient="records"), strict=True):
        render_turns = functools.partial(render, tokenizer, tools=tools.row_tools(row), chat_template=chat_template)
        texts = [render_turns(prompt, add_generation_prompt=True)]
        masks = [0]
        for index, message in enumerate(completion):
            following = completion[index + 1]["role"] if index + 1 < len(completion) else None
            texts.append(render_turns(prompt + completion[: index + 1], add_generation_prompt=following == "assistant"))
            masks.append(int(message["role"] == "assistant"))
        input_ids: list[int] = []
        assistant_masks: list[int] = []
        for previous, text, learned in zip(texts, texts[1:], masks[1:], strict=False):
            if not text.startswith(previous):
                raise ValueError(f"the chat template renders a conversation differently once a turn follows: {text!r}")
            ids = tokenizer(text[len(previous) :], add_special_tokens=False)["input_ids"]
            # The model's turn ends at its end-of-turn token; what the template puts after it is not generated.
            ends = [i for i, token in enumerate(ids) if token == tokenizer.eos_token_id]
            cut = ends[-1] + 1 if learned and ends else (len(ids) if learned else 0)
            input_ids += ids
            assistant_masks += [1] * cut + [0] * (len(ids) - cut)
        prompt_ids = tokenizer(texts[0], add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": prompt_ids + input_ids, "assistant_masks": [0] * len(prompt_ids) + assistant_masks})
    return pd.DataFrame(rows)


def warm_start_fingerprint(
    model: ModelParams, params: WarmStartParams, seed: int, examples: pd.DataFrame
) -> dict[str, Any]:
    """What decides the warm-started weights: the starting model, the section, the seed, the examples."""
    return {
        **model_identity(model),
        "warm_start": params.model_dump(exclude={"output_dir"}),
        "seed": seed,
        "data.sha256": data_sha256(examples),
        **package_versions(),
    }


def prompt_hashes(prompts: pd.Series) -> list[str]:
    """A short hash of each prompt (text or messages), to tell later whether a prompt was a training example."""
    return [hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16] for prompt in prompts.tolist()]


class HeldOutLeakError(ProjectError, ValueError):
    """Held-out prompts were among the warm start's training examples: their scores would not be held-out ones."""


def check_held_out(model_dir: str | Path, eval_dataset: pd.DataFrame | None) -> None:
    """Refuse a held-out set that shares prompts with the examples ``model_dir``'s warm start trained on (a
    warm-started model reused by a run that splits the problems differently)."""
    path = Path(model_dir) / FINGERPRINT_FILE
    if eval_dataset is None or eval_dataset.empty or not path.is_file():
        return
    seen = set(json.loads(path.read_text()).get("prompt_hashes", []))
    shared = sum(digest in seen for digest in prompt_hashes(eval_dataset["prompt"]))
    if shared:
        raise HeldOutLeakError(
            f"{shared} of the {len(eval_dataset)} held-out prompts were training examples of the warm start in "
            f"{model_dir}, so the held-out scores would not be held out. Split the problems as the run that made it "
            "did (the same seed, data.eval_size and data), or let this variant make its own warm start."
        )


def recorded_fingerprint(output_dir: str | Path) -> dict[str, Any] | None:
    record = read_record(output_dir, FINGERPRINT_FILE)
    return record["fingerprint"] if record else None


def ensure_warm_start(train_dataset: pd.DataFrame, base_model_path: str, config: RunConfig) -> str:
    """The warm-started model's directory: reused when its fingerprint matches, otherwise trained and written
    atomically (an interrupted run leaves the previous model or none, never half of one)."""
    model, params, seed = config.params.model, config.params.warm_start, config.params.seed
    if params is None:
        raise ValueError(f"{config.variant} has no warm start")
    tokenizer = load_tokenizer(base_model_path, model.revision, model.trust_remote_code)
    examples = solved_examples(train_dataset, params.completion_column, tokenizer, config.tools)

    def train(staging: Path) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="warm_start-") as scratch:
            trainer = SFTTrainer(
                model=base_model_path,
                args=config.build_sft_config(scratch),
                train_dataset=Dataset.from_pandas(examples, preserve_index=False),
                processing_class=tokenizer,
            )
            use_quiet_progress_bar(trainer)
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        summary = {
            "steps": trainer.state.global_step,
            "examples": len(examples),
            "train_seconds": round(seconds, 2),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
        }
        loss = f", loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""
        logger.info(
            "Warm start: %d steps on %d solved examples in %.1f s%s", summary["steps"], len(examples), seconds, loss
        )
        trainer.model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        return {**summary, "prompt_hashes": prompt_hashes(train_dataset["prompt"])}

    fingerprint = warm_start_fingerprint(model, params, seed, examples)
    if ensure_artifact(params.output_dir, FINGERPRINT_FILE, fingerprint, train):
        logger.info("Warm start: reusing %s (same model, parameters and data)", params.output_dir)
    return params.output_dir

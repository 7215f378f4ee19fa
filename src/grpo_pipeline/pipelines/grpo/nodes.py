"""Nodes of the GRPO pipeline. Each is a small function of catalog data and ``params:`` sections."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from grpo_pipeline.config.params import parse_training_params
from grpo_pipeline.config.schema import (
    BenchmarkParams,
    DataParams,
    DistributedParams,
    FormattingParams,
    ModelParams,
    PeftParams,
    RewardParams,
    ValidationParams,
    parse_section,
)
from grpo_pipeline.evaluation import decode, generate_greedy, score
from grpo_pipeline.io.checkpoint_dataset import HFCheckpoint
from grpo_pipeline.io.prompt_dataset import LINE_COLUMN, SOURCE_ATTR
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer
from grpo_pipeline.models.tiny import TinyModelSpec, ensure_tiny_model
from grpo_pipeline.reporting import (
    benchmark_markdown,
    completion_samples_html,
    display_text,
    reward_curve_figure,
    validation_markdown,
)
from grpo_pipeline.training.distributed import launch_training
from grpo_pipeline.training.mlflow_logging import active_run_id
from grpo_pipeline.training.run import TrainingRequest, run_grpo

logger = logging.getLogger(__name__)

MESSAGE_ROLES = {"system", "user", "assistant"}


class PromptDataError(ValueError):
    """A prompt file that cannot be used; the message names the file, the row and the fix."""


def _validate_messages(value: Any) -> str | None:
    """None when ``value`` is a usable chat prompt, else what is wrong with it."""
    if not value:
        return "the message list is empty"
    for index, message in enumerate(value):
        if not isinstance(message, dict) or set(message) - {"role", "content"} or "content" not in message:
            return f"message {index} must be an object with 'role' and 'content'"
        if message.get("role") not in MESSAGE_ROLES:
            return f"message {index} has role {message.get('role')!r}; use one of {sorted(MESSAGE_ROLES)}"
        if not isinstance(message["content"], str) or not message["content"].strip():
            return f"message {index} has empty or non-text content"
    if value[-1]["role"] != "user":
        return "the last message must come from the user"
    return None


def _normalise_prompt(value: Any) -> list[dict[str, str]] | str:
    """Chat messages with stripped text, or the problem as a string."""
    if isinstance(value, str):
        return [{"role": "user", "content": value.strip()}] if value.strip() else "the prompt text is empty"
    if isinstance(value, list):
        problem = _validate_messages(value)
        if problem:
            return problem
        return [{"role": message["role"], "content": message["content"].strip()} for message in value]
    return f"the prompt must be text or a list of chat messages, got {type(value).__name__}"


def prepare_prompts(raw_prompts: pd.DataFrame, data: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate and normalise the raw prompt rows, drop duplicates, and split train/eval with ``seed``."""
    params = parse_section(DataParams, data, "data")
    source = raw_prompts.attrs.get(SOURCE_ATTR, "the raw prompt file")
    if raw_prompts.empty:
        raise PromptDataError(f"{source} is empty: it needs one JSON object per line with a prompt and an answer.")
    for column in [params.prompt_column, *params.required_columns]:
        if column not in raw_prompts.columns:
            present = sorted(set(raw_prompts.columns) - {LINE_COLUMN})
            raise PromptDataError(
                f"{source}: column '{column}' is missing (columns present: {present}). Add it to every row, "
                f"or change data.prompt_column / data.required_columns."
            )
    lines = raw_prompts[LINE_COLUMN] if LINE_COLUMN in raw_prompts else pd.Series(range(1, len(raw_prompts) + 1))
    rows = []
    for line, record in zip(lines, raw_prompts.to_dict(orient="records"), strict=True):
        prompt = _normalise_prompt(record[params.prompt_column])
        if isinstance(prompt, str):
            raise PromptDataError(f"{source} line {line}: {prompt}. Fix or remove that row.")
        for column in params.required_columns:
            value = record[column]
            if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
                raise PromptDataError(f"{source} line {line}: '{column}' is empty. Every row needs a value.")
        rows.append({"prompt": prompt, **{column: str(record[column]).strip() for column in params.required_columns}})
    frame = pd.DataFrame(rows)
    key = frame["prompt"].map(json.dumps) + "\x00" + frame[params.required_columns].astype(str).agg("\x00".join, axis=1)
    duplicated = key.duplicated()
    frame = frame[~duplicated].reset_index(drop=True)
    if len(frame) <= params.eval_size:
        raise PromptDataError(
            f"{source}: {len(frame)} distinct prompts, not enough for data.eval_size={params.eval_size} "
            "plus a training set. Lower data.eval_size or add prompts."
        )
    order = np.random.default_rng(seed).permutation(len(frame))
    eval_prompts = frame.iloc[order[: params.eval_size]].reset_index(drop=True)
    train_prompts = frame.iloc[order[params.eval_size :]].reset_index(drop=True)
    if params.max_train_prompts is not None:
        train_prompts = train_prompts.head(params.max_train_prompts)
    logger.info(
        "Prompts: %d rows read, %d duplicates dropped, %d train / %d eval",
        len(raw_prompts),
        int(duplicated.sum()),
        len(train_prompts),
        len(eval_prompts),
    )
    return train_prompts, eval_prompts


def resolve_base_model(model: dict[str, Any]) -> str:
    """Where the base model is: built here when ``model.build_tiny`` is set, otherwise a hub id or path."""
    params = parse_section(ModelParams, model, "model")
    if params.build_tiny is None:
        return params.name_or_path
    spec = TinyModelSpec(**params.build_tiny.model_dump())
    return str(ensure_tiny_model(params.name_or_path, spec))


def format_prompts(
    train_prompts: pd.DataFrame,
    eval_prompts: pd.DataFrame,
    base_model_path: str,
    model: dict[str, Any],
    formatting: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Apply the chat template, measure prompt lengths in tokens, and drop prompts over the limit.

    The ``prompt`` column of the output is what ``GRPOTrainer`` takes: chat messages, or with
    ``formatting.prompt_format: text`` the templated string; ``prompt_text`` always holds the latter.
    """
    model_params = parse_section(ModelParams, model, "model")
    params = parse_section(FormattingParams, formatting, "formatting")
    tokenizer = load_tokenizer(base_model_path, model_params.revision, model_params.trust_remote_code)
    statistics: dict[str, Any] = {"max_prompt_length": params.max_prompt_length}
    formatted = []
    for split, frame in (("train", train_prompts), ("eval", eval_prompts)):
        texts = [
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            for messages in frame["prompt"]
        ]
        lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
        keep = lengths <= params.max_prompt_length
        statistics[split] = {
            "prompts": len(frame),
            "dropped_over_max_length": int((~keep).sum()),
            "tokens_min": int(lengths.min()) if len(lengths) else 0,
            "tokens_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "tokens_p95": float(np.percentile(lengths, 95)) if len(lengths) else 0.0,
            "tokens_max": int(lengths.max()) if len(lengths) else 0,
        }
        if (~keep).any():
            logger.warning(
                "%s split: dropped %d of %d prompts longer than formatting.max_prompt_length=%d tokens",
                split,
                int((~keep).sum()),
                len(frame),
                params.max_prompt_length,
            )
        result = frame[keep].copy()
        result["prompt_text"] = [text for text, kept in zip(texts, keep, strict=True) if kept]
        if params.prompt_format == "text":
            result["prompt"] = result["prompt_text"]
        result["prompt_tokens"] = lengths[keep]
        if result.empty:
            raise PromptDataError(
                f"Every {split} prompt is longer than formatting.max_prompt_length={params.max_prompt_length} "
                f"tokens (shortest: {statistics[split]['tokens_min']}). Raise the limit."
            )
        formatted.append(result.reset_index(drop=True))
    return formatted[0], formatted[1], statistics


def train_grpo(
    train_dataset: pd.DataFrame,
    base_model_path: str,
    model: dict[str, Any],
    peft: dict[str, Any] | None,
    training: dict[str, Any],
    reward: dict[str, Any],
    seed: int,
    distributed: dict[str, Any] | None = None,
) -> tuple[HFCheckpoint, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune the base model with ``trl.GRPOTrainer``; return checkpoint, step metrics, timings, samples.

    ``peft`` set (the lora variant) trains LoRA adapters; ``training.resume_from_checkpoint: auto``
    continues a crashed run (see grpo_pipeline/training/run.py); ``distributed.num_processes`` > 1
    trains under ``accelerate launch`` (see grpo_pipeline/training/distributed.py).
    """
    training_params, seed_config_mapping = parse_training_params(training)
    distributed_params = parse_section(DistributedParams, distributed, "distributed")
    request = TrainingRequest(
        train_dataset=train_dataset,
        base_model_path=base_model_path,
        model=parse_section(ModelParams, model, "model"),
        peft=None if peft is None else parse_section(PeftParams, peft, "peft"),
        training=training_params,
        reward=parse_section(RewardParams, reward, "reward"),
        seed=seed,
        seed_config_mapping=seed_config_mapping,
    )
    if distributed_params.num_processes > 1:
        return launch_training(request, distributed_params, mlflow.get_tracking_uri(), active_run_id())
    return run_grpo(request, active_run_id())


def validate_checkpoint(
    checkpoint: HFCheckpoint,
    base_model_path: str,
    eval_dataset: pd.DataFrame,
    model: dict[str, Any],
    reward: dict[str, Any],
    validation: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """Score the checkpoint reloaded from disk against the base model on the held-out prompts."""
    model_params = parse_section(ModelParams, model, "model")
    reward_params = parse_section(RewardParams, reward, "reward")
    params = parse_section(ValidationParams, validation, "validation")
    frame = eval_dataset.head(params.max_prompts)
    prompt_texts = frame["prompt_text"].tolist()

    base = load_causal_lm(base_model_path, model_params.revision, model_params.dtype, model_params.trust_remote_code)
    base_ids, base_finite = generate_greedy(base, checkpoint.tokenizer, prompt_texts, params.max_new_tokens)
    del base
    trained_ids, trained_finite = generate_greedy(
        checkpoint.model, checkpoint.tokenizer, prompt_texts, params.max_new_tokens
    )
    base_completions = decode(checkpoint.tokenizer, base_ids)
    trained_completions = decode(checkpoint.tokenizer, trained_ids)
    base_scores = score(base_completions, frame, reward_params)
    trained_scores = score(trained_completions, frame, reward_params)
    gain = trained_scores["mean_reward"] - base_scores["mean_reward"]

    failures = []
    merged_export = None
    if checkpoint.merged_model is not None:
        count = min(params.merge_check_prompts, len(prompt_texts))
        merged_ids, _ = generate_greedy(
            checkpoint.merged_model, checkpoint.tokenizer, prompt_texts[:count], params.max_new_tokens
        )
        identical = sum(a == b for a, b in zip(merged_ids, trained_ids[:count], strict=True))
        merged_export = {"prompts": count, "identical_greedy_generations": identical, "matches": identical == count}
        if identical != count:
            failures.append(
                f"the merged export generates different tokens from base+adapter on {count - identical} of "
                f"{count} prompts"
            )
    if not trained_finite or not math.isfinite(trained_scores["mean_reward"]):
        failures.append("the checkpoint produces NaN/inf logits or rewards")
    if params.min_eval_reward is not None and trained_scores["mean_reward"] < params.min_eval_reward:
        failures.append(
            f"mean eval reward {trained_scores['mean_reward']:.3f} "
            f"< validation.min_eval_reward={params.min_eval_reward}"
        )
    if params.min_reward_gain is not None and gain < params.min_reward_gain:
        failures.append(
            f"reward gain over the base model {gain:+.3f} < validation.min_reward_gain={params.min_reward_gain}"
        )

    report = {
        "checkpoint": checkpoint.path,
        "base_model": base_model_path,
        "global_step": checkpoint.trainer_state.get("global_step"),
        "eval_prompts": len(frame),
        "max_new_tokens": params.max_new_tokens,
        "reward_weights": dict(zip(reward_params.functions, reward_params.normalised_weights(), strict=True)),
        "base": {key: base_scores[key] for key in ("mean_reward", "rewards")} | {"finite": base_finite},
        "trained": {key: trained_scores[key] for key in ("mean_reward", "rewards")} | {"finite": trained_finite},
        "reward_gain": gain,
        "adapter": checkpoint.is_adapter,
        "merged_export": merged_export,
        "thresholds": {"min_eval_reward": params.min_eval_reward, "min_reward_gain": params.min_reward_gain},
        "passed": not failures,
        "failures": failures,
        "samples": [
            {
                "prompt": display_text(prompt),
                "answer": str(row.get("answer", "")),
                "base_completion": base_completion,
                "trained_completion": trained_completion,
                "base_reward": base_reward,
                "trained_reward": trained_reward,
            }
            for prompt, row, base_completion, trained_completion, base_reward, trained_reward in zip(
                frame["prompt"],
                frame.to_dict(orient="records"),
                base_completions,
                trained_completions,
                base_scores["per_prompt"],
                trained_scores["per_prompt"],
                strict=True,
            )
        ][: params.sample_rows],
    }
    if failures:
        raise ValueError(
            f"Checkpoint validation failed for {checkpoint.path}: "
            + "; ".join(failures)
            + f". Base {base_scores['mean_reward']:.3f} -> trained {trained_scores['mean_reward']:.3f}."
            " Train longer or adjust the thresholds under validation."
        )
    return report, validation_markdown(report)


def plot_reward_curve(training_metrics: pd.DataFrame, reward: dict[str, Any]) -> Any:
    """Mean reward per step with its spread across the group, and each reward's mean."""
    reward_params = parse_section(RewardParams, reward, "reward")
    return reward_curve_figure(training_metrics, reward_params.functions)


def benchmark_run(
    training_timings: dict[str, Any], training: dict[str, Any], benchmark: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """One row of the benchmark table (the seed's mode / steps / wall time / s/step, and more)."""
    params = parse_section(BenchmarkParams, benchmark, "benchmark")
    training_params, _ = parse_training_params(training)
    timings = training_timings
    row = {
        "mode": params.mode,
        "steps": timings["steps"],
        "wall_time_s": round(timings["train_wall_seconds"], 2),
        "s_per_step": round(timings["train_wall_seconds"] / max(timings["steps"], 1), 4),
        "step_s_min": round(timings["step_seconds_min"], 4),
        "step_s_median": round(timings["step_seconds_median"], 4),
        "step_s_max": round(timings["step_seconds_max"], 4),
        "generation_share": round(timings["generation_share"], 3),
        "optimisation_share": round(1 - timings["generation_share"], 3),
        "generated_tokens_per_s": round(timings["generated_tokens_per_second"], 1),
        "batch_size": training_params.per_device_train_batch_size,
        "num_generations": training_params.num_generations,
        "trainable_parameters": timings["trainable_parameters"],
        "total_parameters": timings["total_parameters"],
        "trainable_share": round(timings["trainable_parameters"] / timings["total_parameters"], 4),
        "peak_rss_mb": round(timings["peak_rss_mb"], 1),
        "peak_gpu_mb": None if timings["peak_gpu_mb"] is None else round(timings["peak_gpu_mb"], 1),
        "device": timings["device"],
    }
    table = pd.DataFrame([row])
    return table, benchmark_markdown(table)


def render_completion_samples(training_completions: list[dict[str, Any]]) -> str:
    """The sampled completions as an HTML table a person can read in MLflow's artifact viewer."""
    return completion_samples_html(training_completions)

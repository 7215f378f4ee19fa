"""The validation policy: the checkpoint reloaded from disk against its base model on the held-out prompts.

Both generate greedily and are scored with the run's rewards; a LoRA merged export must generate what
base+adapter does; the thresholds under ``validation`` decide whether the checkpoint passes.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from grpo_pipeline.config.schema import ModelParams, RewardParams, ValidationParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.evaluation import decode, generate_greedy, reward_scorers, score
from grpo_pipeline.models.checkpoint import HFCheckpoint
from grpo_pipeline.models.loading import load_causal_lm
from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.reporting import display_text


class ValidationFailedError(ProjectError, ValueError):
    """The checkpoint did not pass validation; the message lists every failure and what to do."""


def merged_export_check(
    checkpoint: HFCheckpoint, prompt_texts: list[str], trained_ids: list[list[int]], params: ValidationParams
) -> dict[str, Any] | None:
    """Whether the merged export generates base+adapter's tokens on the first prompts; None without an export."""
    if checkpoint.merged_model is None:
        return None
    count = min(params.merge_check_prompts, len(prompt_texts))
    merged_ids, _ = generate_greedy(
        checkpoint.merged_model, checkpoint.tokenizer, prompt_texts[:count], params.max_new_tokens
    )
    identical = sum(a == b for a, b in zip(merged_ids, trained_ids[:count], strict=True))
    return {"prompts": count, "identical_greedy_generations": identical, "matches": identical == count}


def failures_of(
    base_scores: dict[str, Any],
    trained_scores: dict[str, Any],
    trained_finite: bool,
    merged_export: dict[str, Any] | None,
    params: ValidationParams,
) -> list[str]:
    """What keeps the checkpoint from passing, one sentence each; empty when it passes."""
    failures = []
    gain = trained_scores["mean_reward"] - base_scores["mean_reward"]
    if merged_export is not None and not merged_export["matches"]:
        different = merged_export["prompts"] - merged_export["identical_greedy_generations"]
        failures.append(
            f"the merged export generates different tokens from base+adapter on {different} of "
            f"{merged_export['prompts']} prompts"
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
    return failures


def validate_against_base(
    checkpoint: HFCheckpoint,
    base_model_path: str,
    eval_dataset: pd.DataFrame,
    model_params: ModelParams,
    reward_params: RewardParams,
    params: ValidationParams,
) -> dict[str, Any]:
    """The validation report: scores of base and trained model, the merged-export check, pass or fail."""
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
    scorers, weights = reward_scorers(reward_params), reward_params.all_weights()
    base_scores = score(base_completions, base_ids, frame, scorers, weights)
    trained_scores = score(trained_completions, trained_ids, frame, scorers, weights)
    merged_export = merged_export_check(checkpoint, prompt_texts, trained_ids, params)
    failures = failures_of(base_scores, trained_scores, trained_finite, merged_export, params)
    return {
        "checkpoint": checkpoint.path,
        "base_model": base_model_path,
        "global_step": checkpoint.trainer_state.get("global_step"),
        "eval_prompts": len(frame),
        "max_new_tokens": params.max_new_tokens,
        "reward_weights": dict(zip(reward_params.labels(), reward_params.all_weights(), strict=True)),
        "base": {key: base_scores[key] for key in ("mean_reward", "rewards")} | {"finite": base_finite},
        "trained": {key: trained_scores[key] for key in ("mean_reward", "rewards")} | {"finite": trained_finite},
        "reward_gain": trained_scores["mean_reward"] - base_scores["mean_reward"],
        "adapter": checkpoint.is_adapter,
        "merged_export": merged_export,
        "thresholds": {"min_eval_reward": params.min_eval_reward, "min_reward_gain": params.min_reward_gain},
        "passed": not failures,
        "failures": failures,
        "samples": [
            {
                "prompt": display_text(prompt),
                **{column: str(value) for column, value in row.items() if column not in ("prompt", *FORMATTED_COLUMNS)},
                "base_completion": base_completion,
                "trained_completion": trained_completion,
                "trained_generated": trained_generated,
                "base_reward": base_reward,
                "trained_reward": trained_reward,
            }
            for prompt, row, base_completion, trained_completion, trained_generated, base_reward, trained_reward in zip(
                frame["prompt"],
                frame.to_dict(orient="records"),
                base_completions,
                trained_completions,
                decode(checkpoint.tokenizer, trained_ids, skip_special_tokens=False),
                base_scores["per_prompt"],
                trained_scores["per_prompt"],
                strict=True,
            )
        ][: params.sample_rows],
    }


def raise_if_failed(report: dict[str, Any]) -> None:
    """Stop the run with every failure of ``report`` and the way on."""
    if report["failures"]:
        raise ValidationFailedError(
            f"Checkpoint validation failed for {report['checkpoint']}: "
            + "; ".join(report["failures"])
            + f". Base {report['base']['mean_reward']:.3f} -> trained {report['trained']['mean_reward']:.3f}."
            " Train longer or adjust the thresholds under validation."
        )

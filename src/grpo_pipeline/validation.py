"""The validation policy: the checkpoint reloaded from disk against its base model on the held-out prompts.

Both generate greedily, and sample as GRPO samples, through a ``GRPOTrainer`` built from the run's configuration
(evaluation.py), and are scored with the run's rewards; with ``validation.accuracy_reward`` the report gives greedy
and sampled accuracy. A LoRA merged export must generate what base+adapter does; the thresholds under ``validation``
decide whether the checkpoint passes.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd
import torch

from grpo_pipeline.config.run_config import RunConfig
from grpo_pipeline.config.schema import ValidationParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.evaluation import Evaluator, sampling_settings, summarise, trainer_state_of
from grpo_pipeline.models.checkpoint import HFCheckpoint
from grpo_pipeline.models.loading import load_causal_lm, loading_choices
from grpo_pipeline.prompts import FORMATTED_COLUMNS
from grpo_pipeline.reporting import plain
from grpo_pipeline.rewards import RewardSet
from grpo_pipeline.rewards.arithmetic import completion_text
from grpo_pipeline.rewards.guard import scoring_context
from grpo_pipeline.rewards.models import load_reward_model
from grpo_pipeline.transcripts import display_text, transcript
from grpo_pipeline.validation_report import DECODINGS, ValidationReport, decoded_scores, thresholds_of

logger = logging.getLogger(__name__)


class ValidationFailedError(ProjectError, ValueError):
    """The checkpoint did not pass validation; the message lists every failure and what to do."""


def merged_export_check(merged_ids: list[list[int]], adapter: Evaluator, params: ValidationParams) -> dict[str, Any]:
    """Whether a LoRA checkpoint's merged export generates base+adapter's tokens (``adapter``) on the first prompts
    (``merged_ids``: the export's greedy tokens)."""
    count = min(params.merge_check_prompts, len(merged_ids))
    adapter_ids = adapter.complete(greedy=True, count=count).ids
    identical = sum(a == b for a, b in zip(merged_ids[:count], adapter_ids, strict=True))
    return {"prompts": count, "identical_greedy_generations": identical, "matches": identical == count}


def evaluated_model(checkpoint: HFCheckpoint) -> tuple[Any, str]:
    """The model whose figures are the checkpoint's, and what it is: a LoRA run's merged export when it wrote one (the
    model the registry holds; cheaper to run than base+adapter), else the checkpoint's own model."""
    if checkpoint.merged_model is not None:
        return checkpoint.merged_model, "merged export"
    return checkpoint.model, "base+adapter" if checkpoint.is_adapter else "full model"


def failures_of(
    base: dict[str, Any], trained: dict[str, Any], merged_export: dict[str, Any] | None, params: ValidationParams
) -> list[str]:
    """What keeps the checkpoint from passing, one sentence each; empty when it passes."""
    failures = []
    gain = reward_gain(base, trained)
    if merged_export is not None and not merged_export["matches"]:
        different = merged_export["prompts"] - merged_export["identical_greedy_generations"]
        failures.append(
            f"the merged export generates different tokens from base+adapter on {different} of "
            f"{merged_export['prompts']} prompts"
        )
    if not trained["finite"]:
        failures.append("the checkpoint produces NaN/inf logits")
    failures += collapse_failures(trained["answers"], params)
    if trained["mean_reward"] is None:
        failures.append("no reward applies to any of the trained model's held-out completions (every reward gave None)")
    elif params.min_eval_reward is not None and trained["mean_reward"] < params.min_eval_reward:
        failures.append(
            f"mean eval reward {trained['mean_reward']:.3f} < validation.min_eval_reward={params.min_eval_reward}"
        )
    if params.min_reward_gain is not None and (gain is None or gain < params.min_reward_gain):
        shown = "none" if gain is None else f"{gain:+.3f}"
        failures.append(
            f"reward gain over the base model {shown} < validation.min_reward_gain={params.min_reward_gain}"
        )
    for decoding, threshold in (
        ("greedy", params.min_greedy_accuracy_gain),
        ("sampled", params.min_sampled_accuracy_gain),
    ):
        gain = accuracy_gain(base, trained, decoding)
        if threshold is not None and (gain is None or gain < threshold):
            shown = "none (NaN/inf logits)" if gain is None else f"{gain:+.3f}"
            failures.append(
                f"{decoding} accuracy gain over the base model {shown} < validation.min_{decoding}_accuracy_gain="
                f"{threshold}"
            )
    return failures


def answer_spread(completions: list[Any], pattern: str | None) -> dict[str, Any]:
    """How a model's greedy answers spread over the prompts: its most common answer and that answer's share, and
    the share of prompts it gives no answer to (``pattern`` finds none, or the reply is empty)."""
    answers = [final_answer(completion, pattern) for completion in completions]
    given = Counter(answer for answer in answers if answer is not None)
    most_common, count = given.most_common(1)[0] if given else (None, 0)
    total = max(len(answers), 1)
    return {
        "most_common": most_common,
        "most_common_share": count / total,
        "no_answer_share": sum(answer is None for answer in answers) / total,
    }


def collapse_failures(answers: dict[str, Any], params: ValidationParams) -> list[str]:
    """A collapsed policy, whatever the gates: one answer to most prompts, or none."""
    failures = []
    same, share = params.max_same_answer_share, answers["most_common_share"]
    if same is not None and share > same:
        failures.append(
            f"the trained model gives the same answer, {answers['most_common']!r}, to {share:.0%} of the held-out "
            f"prompts (validation.max_same_answer_share={same}): it has collapsed"
        )
    none, no_answer = params.max_no_answer_share, answers["no_answer_share"]
    if none is not None and no_answer > none:
        failures.append(
            f"the trained model gives no answer to {no_answer:.0%} of the held-out prompts "
            f"(validation.max_no_answer_share={none}; answer_pattern={params.answer_pattern!r})"
        )
    return failures


def reward_gain(base: dict[str, Any], trained: dict[str, Any]) -> float | None:
    """Trained minus base mean reward, None where either has none (no reward applied)."""
    if base["mean_reward"] is None or trained["mean_reward"] is None:
        return None
    return trained["mean_reward"] - base["mean_reward"]


def accuracy_gain(base: dict[str, Any], trained: dict[str, Any], decoding: str) -> float | None:
    """Trained minus base accuracy under ``decoding`` (greedy / sampled), None where either has none."""
    base_scores, trained_scores = decoded_scores(base, decoding), decoded_scores(trained, decoding)
    if not base_scores or not trained_scores or None in (base_scores["accuracy"], trained_scores["accuracy"]):
        return None
    return trained_scores["accuracy"] - base_scores["accuracy"]


def final_answer(completion: str | list[dict[str, Any]], pattern: str | None) -> str | None:
    """A completion's answer, for maj@k: the final reply (stripped), or the last match of ``pattern`` in it (its
    first group when it has one); None when there is none."""
    reply = completion_text(completion).strip()
    if pattern is None:
        return reply or None
    matches = list(re.finditer(pattern, reply))
    if not matches:
        return None
    last = matches[-1]
    return (last.group(1) if last.re.groups else last.group()).strip()


def at_k(correct: np.ndarray, answers: list[str | None], k: int) -> dict[str, float]:
    """pass@k (any of a prompt's ``k`` samples is right) and maj@k (its most frequent answer is right), over prompts
    whose samples lie together in ``correct`` (the accuracy reward: 1 right; 0 or None wrong) and ``answers``."""
    right = np.nan_to_num(correct, nan=0.0) >= 1.0
    majority_right = []
    for start in range(0, len(answers), k):
        votes = Counter(answer for answer in answers[start : start + k] if answer is not None)
        if not votes:
            majority_right.append(False)
            continue
        winner = votes.most_common(1)[0][0]  # ties: the answer sampled first
        majority_right.append(bool(right[start + answers[start : start + k].index(winner)]))
    return {
        "pass_at_k": float(right.reshape(-1, k).any(axis=1).mean()),
        "maj_at_k": float(np.mean(majority_right)),
    }


def assess(evaluator: Evaluator, params: ValidationParams, rewards: RewardSet, seed: int) -> dict[str, Any]:
    """Greedy and sampled completions of the evaluator's model on its prompts, each reward (with how many
    completions it did not apply to), their weighted sum, tool use and, with ``params.accuracy_reward``, accuracy,
    and for the sampled ones pass@k and maj@k."""
    greedy_run = evaluator.complete(greedy=True)
    finite = evaluator.finite(greedy_run)
    greedy = summarise(greedy_run.rewards, rewards.names, rewards.weights)
    result = {
        "mean_reward": greedy["mean_reward"],
        "rewards": greedy["rewards"],
        "skipped": greedy["skipped"],
        "finite": finite,
        "answers": answer_spread(greedy_run.completions, params.answer_pattern),
        "accuracy": greedy["rewards"][params.accuracy_reward] if params.accuracy_reward else None,
        **({"tool_use": greedy_run.tool_use} if greedy_run.tool_use is not None else {}),
        "sampled": None,
        "greedy_ids": greedy_run.ids,
        "completions": greedy_run.completions,
        "per_prompt": greedy["per_prompt"],
    }
    if params.sampled_completions and finite:  # sampling from NaN logits fails outright
        torch.manual_seed(seed)
        count = params.sampled_completions
        sampled_run = evaluator.complete(greedy=False, samples=count)
        sampled = summarise(sampled_run.rewards, rewards.names, rewards.weights)
        accuracy = params.accuracy_reward
        result["sampled"] = {
            "completions_per_prompt": count,
            "mean_reward": sampled["mean_reward"],
            "rewards": sampled["rewards"],
            "skipped": sampled["skipped"],
            "accuracy": sampled["rewards"][accuracy] if accuracy else None,
            **(
                at_k(
                    sampled["per_completion"][accuracy],
                    [final_answer(completion, params.answer_pattern) for completion in sampled_run.completions],
                    count,
                )
                if accuracy
                else {}
            ),
            **({"tool_use": sampled_run.tool_use} if sampled_run.tool_use is not None else {}),
        }
    return result


def validate_against_base(
    checkpoint: HFCheckpoint,
    base_model_path: str,
    eval_dataset: pd.DataFrame,
    config: RunConfig,
    mlflow_run_id: str | None = None,
) -> ValidationReport:
    """The validation report: scores of base and trained model, the merged-export check, pass or fail; which run
    validated (``mlflow_run_id``) and which trained the checkpoint.

    The base model is loaded as the run loads it (``model_init_kwargs``: quantization, attention), and the rewards
    are called as training calls them, with the checkpoint's trainer state: each model generates and is scored by a
    ``GRPOTrainer`` built from the run's configuration (evaluation.py).
    """
    params, rewards, seed = config.params.validation, config.rewards, config.params.seed
    frame = eval_dataset.head(params.max_prompts).reset_index(drop=True)
    tokenizer, trainer_state = checkpoint.tokenizer, trainer_state_of(checkpoint.trainer_state)
    sampling = sampling_settings(config.grpo_config)
    if (trained_with := checkpoint.trainer_state.get("sampling")) and trained_with != sampling:
        logger.warning(
            "%s was trained sampling with %s; validation samples as the run's configuration says: %s",
            checkpoint.path or "The checkpoint",
            trained_with,
            sampling,
        )
    reward_models = [load_reward_model(model) for model in rewards.models]

    def evaluator(model: Any) -> Evaluator:
        return Evaluator(model, tokenizer, frame, config, params.max_new_tokens, reward_models, trainer_state)

    base_model = load_causal_lm(base_model_path, **config.model_init_kwargs)
    # Both as training loaded them: the base with the run's model_init_kwargs, the checkpoint with those it records.
    trained_model, trained_kind = evaluated_model(checkpoint)
    model_loading = {"base": loading_choices(base_model), "trained": loading_choices(trained_model)}
    token = scoring_context.set(f"in validation of {checkpoint.path or 'the checkpoint'}")
    try:
        with closing(evaluator(base_model)) as base_evaluator:
            base = assess(base_evaluator, params, rewards, seed)
        del base_model
        with closing(evaluator(trained_model)) as trained_evaluator:
            trained = assess(trained_evaluator, params, rewards, seed)
        merged_export = None
        if checkpoint.merged_model is not None:
            with closing(evaluator(checkpoint.model)) as adapter:
                merged_export = merged_export_check(trained["greedy_ids"], adapter, params)
    finally:
        scoring_context.reset(token)
    hidden = ("greedy_ids", "completions", "per_prompt")
    return ValidationReport(
        mlflow_run_id=mlflow_run_id,
        checkpoint=checkpoint.path,
        checkpoint_mlflow_run_id=checkpoint.trainer_state.get("mlflow_run_id"),
        base_model=base_model_path,
        global_step=checkpoint.trainer_state.get("global_step"),
        eval_prompts=len(frame),
        max_new_tokens=params.max_new_tokens,
        sampling=sampling | {"completions_per_prompt": params.sampled_completions},
        reward_weights=dict(zip(rewards.names, rewards.weights, strict=True)),
        accuracy_reward=params.accuracy_reward,
        base={key: value for key, value in base.items() if key not in hidden},
        trained={key: value for key, value in trained.items() if key not in hidden},
        reward_gain=reward_gain(base, trained),
        accuracy_gain={decoding: accuracy_gain(base, trained, decoding) for decoding in DECODINGS}
        if params.accuracy_reward
        else None,
        adapter=checkpoint.is_adapter,
        trained_model=trained_kind,
        model_loading=model_loading,
        merged_export=merged_export,
        thresholds=thresholds_of(params),
        failures=failures_of(base, trained, merged_export, params),
        samples=[
            {
                "prompt": display_text(prompt),
                **{column: str(value) for column, value in row.items() if column not in ("prompt", *FORMATTED_COLUMNS)},
                "base_completion": transcript(base_completion),
                "trained_completion": transcript(trained_completion),
                "trained_generated": trained_generated,
                "base_reward": base_reward,
                "trained_reward": trained_reward,
            }
            for prompt, row, base_completion, trained_completion, trained_generated, base_reward, trained_reward in zip(
                frame["prompt"],
                frame.to_dict(orient="records"),
                base["completions"],
                trained["completions"],
                tokenizer.batch_decode(trained["greedy_ids"], skip_special_tokens=False),
                base["per_prompt"],
                trained["per_prompt"],
                strict=True,
            )
        ][: params.sample_rows],
    )


def raise_if_failed(report: dict[str, Any]) -> None:
    """Stop the run with every failure of ``report`` and the way on."""
    if report["failures"]:
        raise ValidationFailedError(
            f"Checkpoint validation failed for {report['checkpoint']}: "
            + "; ".join(report["failures"])
            + f". Base {plain(report['base']['mean_reward'])} -> trained {plain(report['trained']['mean_reward'])}."
            " Train longer or adjust the thresholds under validation."
        )

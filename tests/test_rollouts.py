"""Custom ``rollout_func``: TRL 1.16's contract, the shipped rollout and the seed-style adapter, training for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig

from grpo_pipeline.config.schema import RunParams
from grpo_pipeline.errors import ParameterError
from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer
from grpo_pipeline.rewards import REWARD_FUNCTIONS
from grpo_pipeline.training.rollouts import check_rollout_func, generate_rollout, load_rollout_func
from grpo_pipeline.training.trl_internals import TimedGRPOTrainer
from tests import rollout_examples
from tests.test_training_and_validation import train_and_save, weights_changed

NUM_GENERATIONS = 4


class RolloutFieldProbe:
    """A reward of zero weight that records the extra rollout fields TRL hands to the rewards."""

    __name__ = "rollout_probe"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        self.calls.append({"completions": len(completions), **kwargs})
        return [0.0] * len(completions)


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> RolloutFieldProbe:
    reward = RolloutFieldProbe()
    monkeypatch.setitem(REWARD_FUNCTIONS, "rollout_probe", reward)
    return reward


def train_with_rollout(
    rollout: str, tiny_model_dir: Path, datasets: tuple[pd.DataFrame, pd.DataFrame], output: Path
) -> tuple[Any, pd.DataFrame]:
    dataset, _, metrics, _, _ = train_and_save(
        tiny_model_dir,
        datasets[0],
        output,
        reward={"functions": ["accuracy", "format", "length", "rollout_probe"], "weights": [1.0, 1.0, 1.0, 0.0]},
        run={"rollout_func": rollout},
        num_generations=NUM_GENERATIONS,
    )
    return dataset.load().model, metrics


@pytest.mark.trainer
def test_shipped_rollout_trains_the_tiny_model_through_grpo_trainer(
    tiny_model_dir: Path, datasets: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, probe: RolloutFieldProbe
) -> None:
    model, metrics = train_with_rollout(
        "grpo_pipeline.training.rollouts:generate_rollout", tiny_model_dir, datasets, tmp_path
    )
    assert metrics["step"].tolist() == [1, 2, 3, 4]
    assert metrics["loss"].notna().all() and metrics["reward"].between(0, 1).all()
    assert weights_changed(tiny_model_dir, model)
    # The extra keys of the rollout reached every reward call, one value per completion.
    assert len(probe.calls) == 4
    for call in probe.calls:
        assert call["rollout_backend"] == ["transformers"] * call["completions"]
        assert len(call["truncated"]) == call["completions"]
        assert all(isinstance(flag, bool) for flag in call["truncated"])


@pytest.mark.trainer
def test_seed_style_three_argument_rollout_trains_through_the_adapter(
    tiny_model_dir: Path, datasets: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, probe: RolloutFieldProbe
) -> None:
    rollout_examples.SEEN["prompts"].clear()
    model, metrics = train_with_rollout("tests.rollout_examples:scripted_answers", tiny_model_dir, datasets, tmp_path)
    assert metrics["step"].tolist() == [1, 2, 3, 4]
    assert weights_changed(tiny_model_dir, model)
    # The old form got templated text (the tiny chat template's turn markers), the GRPOConfig and the tokenizer.
    templated = rollout_examples.SEEN["prompts"][0]
    assert templated.startswith("<|user|>") and templated.endswith("<|assistant|>")
    assert all(isinstance(args, GRPOConfig) for args in rollout_examples.SEEN["args"])
    # Half of the scripted answers are right: accuracy reward is 0.5 at every step.
    assert metrics["rewards/accuracy/mean"].tolist() == [0.5] * 4
    assert {"scripted"} <= set(probe.calls[0])


@pytest.mark.trainer
def test_rollout_contract_one_completion_per_repeated_prompt_with_true_logprobs(
    tiny_model_dir: Path, datasets: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """TRL 1.16 gives the rollout each prompt num_generations times; logprobs are the policy's own."""
    tokenizer = load_tokenizer(tiny_model_dir)
    trainer = TimedGRPOTrainer(
        model=load_causal_lm(tiny_model_dir),
        reward_funcs=REWARD_FUNCTIONS["accuracy"],
        args=GRPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=8,
            num_generations=NUM_GENERATIONS,
            max_completion_length=6,
            use_cpu=True,
            activation_checkpointing=False,
            report_to="none",
        ),
        train_dataset=Dataset.from_pandas(datasets[0][["prompt", "answer"]]),
        processing_class=tokenizer,
        rollout_func=generate_rollout,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    prompts = [example["prompt"] for example in batch]
    groups = [prompts[start : start + NUM_GENERATIONS] for start in range(0, len(prompts), NUM_GENERATIONS)]
    assert all(group == [group[0]] * NUM_GENERATIONS for group in groups)

    output = generate_rollout(prompts, trainer)
    assert len(output["prompt_ids"]) == len(output["completion_ids"]) == len(output["logprobs"]) == len(prompts)
    expected_prompt = tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(output["prompt_ids"][0]) == expected_prompt
    for ids, logprobs in zip(output["completion_ids"], output["logprobs"], strict=True):
        assert 0 < len(ids) <= 6 and len(logprobs) == len(ids)

    # Recompute the sampled tokens' log-probabilities with one forward pass (temperature 1, no top-k/p).
    prompt_ids, completion_ids = output["prompt_ids"][0], output["completion_ids"][0]
    with torch.no_grad():
        logits = trainer.model(torch.tensor([prompt_ids + completion_ids])).logits[0]
    logprobs = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    recomputed = logprobs.gather(1, torch.tensor(completion_ids)[:, None]).squeeze(1).tolist()
    assert recomputed == pytest.approx(output["logprobs"][0], abs=1e-4)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.rollout_examples:missing", "cannot be imported"),
        ("no_such_package.rollouts:fn", "cannot be imported"),
        ("tests.rollout_examples:wrong_arity", "takes 1 required positional arguments"),
        ("tests.rollout_examples:NOT_A_FUNCTION", "not a function"),
        ("generate_rollout", "not an import path"),
    ],
)
def test_bad_rollout_paths_fail_before_training(path: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as error:
        check_rollout_func(RunParams(rollout_func=path), "debug.run")
    assert "debug.run.rollout_func" in str(error.value)


def test_rollout_paths_resolve_to_functions_or_adapters() -> None:
    assert load_rollout_func("grpo_pipeline.training.rollouts:generate_rollout") is generate_rollout
    assert load_rollout_func("grpo_pipeline.training.rollouts.generate_rollout") is generate_rollout
    adapted = load_rollout_func("tests.rollout_examples:scripted_answers")
    assert adapted.__name__ == "seed_rollout[scripted_answers]"

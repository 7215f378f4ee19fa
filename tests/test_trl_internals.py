"""The one module that reads GRPOTrainer's private parts fails loudly, naming TRL's version, when they change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trl
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from grpo_pipeline.models.loading import load_causal_lm, load_tokenizer
from grpo_pipeline.preflight import TRAINER_REWARD_KWARGS
from grpo_pipeline.rewards import REWARD_FUNCTIONS
from grpo_pipeline.training.trl_internals import TimedGRPOTrainer, TrlInternalsChangedError, check_trl_internals

# The keyword arguments the trainer hands a reward, as the one reward below receives them in training.
received_by_reward: set[str] = set()


def format_recording_what_it_receives(completions: list, **kwargs: Any) -> list[float]:
    received_by_reward.update(kwargs)
    return REWARD_FUNCTIONS["format"](completions, **kwargs)


@pytest.fixture
def trainer(tiny_model_dir: Path, datasets: Any, tmp_path: Path) -> TimedGRPOTrainer:
    config = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=4,
        max_steps=1,
        use_cpu=True,
        activation_checkpointing=False,
        report_to="none",
    )
    return TimedGRPOTrainer(
        model=load_causal_lm(tiny_model_dir),
        reward_funcs=[format_recording_what_it_receives],
        args=config,
        train_dataset=Dataset.from_pandas(datasets[0][["prompt", "answer"]], preserve_index=False),
        processing_class=load_tokenizer(tiny_model_dir),
    )


@pytest.mark.trainer
def test_the_installed_trl_has_what_the_project_reads(trainer: TimedGRPOTrainer) -> None:
    check_trl_internals(trainer)
    trainer.train()
    timing = trainer.phase_timing
    assert timing.completion_tokens > 0 and timing.reward_seconds > 0 and trainer.completion_samples
    # The pre-run check of a reward's parameters counts on these, beside the dataset's columns (here 'answer').
    assert received_by_reward == {*TRAINER_REWARD_KWARGS, "answer"} - {"completions"}


@pytest.mark.trainer
def test_a_missing_log_buffer_names_the_trl_version(trainer: TimedGRPOTrainer) -> None:
    del trainer._logs["advantages"]
    with pytest.raises(TrlInternalsChangedError, match=rf"TRL {trl.__version__} changed .*_logs"):
        check_trl_internals(trainer)


@pytest.mark.trainer
def test_a_changed_generate_signature_names_the_trl_version(
    trainer: TimedGRPOTrainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def changed_generate(self: GRPOTrainer, prompts: list, images: list) -> tuple:
        return ()

    # TRL's own method changes; the project's override (which calls it) stays as written.
    monkeypatch.setattr(GRPOTrainer, "_generate", changed_generate)
    with pytest.raises(TrlInternalsChangedError, match=rf"TRL {trl.__version__} changed .*_generate"):
        check_trl_internals(trainer)

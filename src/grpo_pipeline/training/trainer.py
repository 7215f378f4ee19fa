"""Building and running ``trl.GRPOTrainer`` from the project's typed parameters."""

from __future__ import annotations

import resource
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback
from trl import GRPOConfig, GRPOTrainer

from grpo_pipeline.config.schema import PeftParams, RewardParams, TrainingParams
from grpo_pipeline.reporting import display_text

# TRL 1.16 still reads transformers' renamed `is_gradient_checkpointing`; harmless until transformers 6.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

# Fields of TrainingParams that the project handles itself rather than passing to GRPOConfig.
PROJECT_FIELDS = {
    "grpo_config_overrides",
    "torch_num_threads",
    "resume_from_checkpoint",
    "seed_config",
    "completion_samples_every",
    "completion_samples_per_step",
    "rollout_func",
}
_TYPED_FIELDS = set(TrainingParams.model_fields) - PROJECT_FIELDS


def build_grpo_config(training: TrainingParams, reward: RewardParams, seed: int) -> GRPOConfig:
    """A ``GRPOConfig`` from parameters; unknown override keys fail here, before any model is loaded."""
    overlap = _TYPED_FIELDS & set(training.grpo_config_overrides)
    if overlap:
        raise ValueError(
            f"training.grpo_config_overrides repeats typed parameters {sorted(overlap)}; set them under "
            "training directly"
        )
    values = training.model_dump(include=_TYPED_FIELDS)
    try:
        return GRPOConfig(
            **values,
            **training.grpo_config_overrides,
            reward_weights=reward.normalised_weights(),
            seed=seed,
            data_seed=seed,
            report_to="none",  # metrics reach MLflow batched, see training/mlflow_logging.py
            save_only_model=False,
            # Every parameter takes part in every forward pass; True only costs DDP an extra graph traversal.
            ddp_find_unused_parameters=False,
        )
    except TypeError as error:
        raise ValueError(
            f"training.grpo_config_overrides: {error}. Use field names of trl.GRPOConfig (TRL 1.16)."
        ) from None


@dataclass
class GenerationTiming:
    seconds: float = 0.0
    completion_tokens: int = 0


class TimedGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that times its generation phase and keeps sample completions with their rewards.

    Every ``samples_every`` steps it copies ``samples_per_step`` of the completions the step just
    scored (prompt, completion, each reward, advantage) from TRL's own ``_logs`` buffer.
    """

    def __init__(self, *args: Any, samples_every: int = 10, samples_per_step: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation_timing = GenerationTiming()
        self.samples_every = samples_every
        self.samples_per_step = samples_per_step
        self.completion_samples: list[dict[str, Any]] = []

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        step = self.state.global_step
        # Only logs of freshly scored steps: the closing summary log (train_runtime, ...) has no reward yet.
        fresh = bool(self._metrics["train"].get("reward"))
        if fresh and self.samples_per_step and (step == 1 or step % self.samples_every == 0):
            rewards = {name: list(values) for name, values in self._logs["rewards"].items()}
            for index, (prompt, completion) in enumerate(
                list(zip(self._logs["prompt"], self._logs["completion"], strict=False))[: self.samples_per_step]
            ):
                self.completion_samples.append(
                    {
                        "step": step,
                        "prompt": display_text(prompt),
                        "completion": display_text(completion),
                        **{name: round(values[index], 4) for name, values in rewards.items()},
                        "advantage": round(self._logs["advantages"][index], 4),
                    }
                )
        super().log(logs, start_time)

    def _generate(self, prompts: list) -> tuple:
        started = time.perf_counter()
        output = super()._generate(prompts)
        self.generation_timing.seconds += time.perf_counter() - started
        self.generation_timing.completion_tokens += sum(len(ids) for ids in output[1])
        return output


def build_lora_config(peft: PeftParams) -> LoraConfig:
    return LoraConfig(
        r=peft.r,
        lora_alpha=peft.lora_alpha,
        lora_dropout=peft.lora_dropout,
        target_modules=peft.target_modules,
        bias=peft.bias,
        task_type="CAUSAL_LM",
    )


@dataclass
class StepTimer(TrainerCallback):
    """The wall time of every optimisation step this process ran."""

    step_seconds: list[float] = field(default_factory=list)
    _step_started: float = 0.0

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.step_seconds.append(time.perf_counter() - self._step_started)


class RewardProgressCallback(ProgressCallback):
    """One tqdm bar with step, ETA and the latest reward, instead of a printed dict per logging step."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs and "reward" in logs:
            self.training_bar.set_postfix(reward=f"{logs['reward']:.3f}", loss=f"{logs.get('loss', 0.0):.4f}")


def use_reward_progress_bar(trainer: GRPOTrainer) -> None:
    """Swap the stock progress bar (which prints every log dict) for :class:`RewardProgressCallback`."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(RewardProgressCallback)


def peak_memory_mb() -> dict[str, float | None]:
    """Peak resident memory of this process and, when CUDA is in use, peak allocated GPU memory."""
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": rss_mb, "peak_gpu_mb": gpu_mb}

"""Everything the project reads from ``trl.GRPOTrainer``'s private parts, in one place.

TRL offers no public hook for these (and transformers' Trainer none for the third):
- the time spent generating and scoring rewards (``_generate``, ``_calculate_rewards``: TRL's profiler logs them
  to W&B/trackio only), and with tools the completions ``_generate`` returns (its fourth value, the messages of
  every turn), for the share of completions that called a tool and their turns,
- sample completions with each reward and the advantage as a step scored them (the ``_logs`` buffer;
  ``log_completions`` prints a rich table and writes a parquet file per step instead), and
- resuming a model with tied embeddings without a false "missing keys ['lm_head.weight']" warning
  (``Trainer._issue_warnings_after_load``), and
- validation: generating and scoring held-out rows exactly as a training step does
  (``_generate_and_score_completions``), greedy or with several samples per prompt (the trainer's
  ``num_generations_eval``, ``generation_config`` / ``generation_kwargs`` or its vLLM backend's
  ``generation_kwargs``), keeping each completion with its rewards (TRL keeps them only in a bounded log buffer)
  and its tool calls (``_metrics``): :class:`ScoringGRPOTrainer`.

:func:`check_trl_internals` verifies those parts exist with the shape this module expects, and runs
whenever a :class:`TimedGRPOTrainer` is built, so a TRL release that changes them fails at once, naming
the version, instead of mis-reporting.
"""

from __future__ import annotations

import copy
import gc
import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import trl
from trl import GRPOTrainer

from grpo_pipeline.errors import ProjectError
from grpo_pipeline.tools import assistant_turns, called_a_tool
from grpo_pipeline.transcripts import display_text, transcript

# The TRL release this module was written against; a newer one may work, the check says if it does not.
WRITTEN_FOR_TRL = "1.16"
_LOG_BUFFERS = ("prompt", "completion", "rewards", "advantages")
_READ_METHODS = {
    "_generate": ("prompts",),
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("inputs",),
}


class TrlInternalsChangedError(ProjectError, RuntimeError):
    """The installed TRL no longer has a private part of GRPOTrainer that the project reads."""


def check_trl_internals(trainer: GRPOTrainer) -> None:
    """Raise :class:`TrlInternalsChangedError` unless ``trainer`` has the private parts this module uses."""
    problems = []
    for method, parameters in _READ_METHODS.items():
        # TRL's own method, which TimedGRPOTrainer's override calls: the override always has the expected shape.
        found = getattr(GRPOTrainer, method, None)
        if found is None or list(inspect.signature(found).parameters) != ["self", *parameters]:
            problems.append(f"GRPOTrainer.{method}(self, {', '.join(parameters)}) is gone or takes other arguments")
    logs = getattr(trainer, "_logs", None)
    if not isinstance(logs, dict) or any(key not in logs for key in _LOG_BUFFERS):
        problems.append(f"GRPOTrainer._logs no longer holds the buffers {list(_LOG_BUFFERS)}")
    if not callable(getattr(trainer, "_issue_warnings_after_load", None)):
        problems.append("transformers' Trainer._issue_warnings_after_load is gone")
    metrics = getattr(trainer, "_metrics", None)
    if not isinstance(metrics, dict) or "train" not in metrics:
        problems.append("GRPOTrainer._metrics no longer has a 'train' section")
    for attribute in ("num_generations_eval", "generation_config" if not trainer.use_vllm else "vllm_generation"):
        if not hasattr(trainer, attribute):
            problems.append(f"GRPOTrainer.{attribute} is gone")
    if trainer.use_vllm and not isinstance(getattr(trainer.vllm_generation, "generation_kwargs", None), dict):
        problems.append("GRPOTrainer.vllm_generation.generation_kwargs is gone")
    if problems:
        raise TrlInternalsChangedError(
            f"TRL {trl.__version__} changed GRPOTrainer internals that grpo_pipeline/training/trl_internals.py "
            f"reads (written for TRL {WRITTEN_FOR_TRL}): " + "; ".join(problems) + ". Install trl=="
            f"{WRITTEN_FOR_TRL}.* or update that module."
        )


@dataclass
class PhaseTiming:
    """Seconds spent in each phase of training, measured apart: generating and scoring the training batches, and
    evaluating (``trainer.evaluate``, its own generation and scoring included)."""

    generation_seconds: float = 0.0
    reward_seconds: float = 0.0
    evaluation_seconds: float = 0.0
    completion_tokens: int = 0
    evaluating: bool = False


class TimedGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that times its phases (:class:`PhaseTiming`) and keeps sample completions with their rewards.

    Every ``samples_every`` steps it copies ``samples_per_step`` of the completions the step just
    scored (prompt, completion, each reward, advantage) from TRL's own ``_logs`` buffer.
    """

    def __init__(self, *args: Any, samples_every: int = 10, samples_per_step: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_trl_internals(self)
        self.phase_timing = PhaseTiming()
        self.samples_every = samples_every
        self.samples_per_step = samples_per_step
        self.completion_samples: list[dict[str, Any]] = []
        # The latest generation batch's token ids (this process's slice), decoded only when samples are kept:
        # what the model generated, special tokens visible, beside the text the rewards saw (special tokens
        # skipped), so reward hacking with special tokens shows. TRL's `_logs` gathers every process's
        # completions in rank order, so on the main process its first entries are this slice's.
        self.last_completion_ids: list[list[int]] = []

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        step = self.state.global_step
        # Only logs of freshly scored steps: the closing summary log (train_runtime, ...) has no reward yet.
        fresh = bool(self._metrics["train"].get("reward"))
        if fresh and self.samples_per_step and (step == 1 or step % self.samples_every == 0):
            rewards = {name: list(values) for name, values in self._logs["rewards"].items()}
            generated = self.processing_class.batch_decode(
                self.last_completion_ids[: self.samples_per_step], skip_special_tokens=False
            )
            for index, (prompt, completion) in enumerate(
                list(zip(self._logs["prompt"], self._logs["completion"], strict=False))[: self.samples_per_step]
            ):
                self.completion_samples.append(
                    {
                        "step": step,
                        "prompt": display_text(prompt),
                        "completion": transcript(completion),
                        "generated": generated[index] if index < len(generated) else None,
                        **{name: round(values[index], 4) for name, values in rewards.items()},
                        "advantage": round(self._logs["advantages"][index], 4),
                    }
                )
        super().log(logs, start_time)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # A checkpoint of a model with tied embeddings stores the shared matrix once, so resuming reports the
        # tied lm_head as "missing" on every resume; it is not: tying restores it. Other keys still warn.
        tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        if tied and set(load_result.missing_keys) <= tied and not load_result.unexpected_keys:
            self.model.tie_weights()
            return
        super()._issue_warnings_after_load(load_result)

    def _generate(self, prompts: list) -> tuple:
        started = time.perf_counter()
        output = super()._generate(prompts)
        if self.tools:
            self._log_tool_use(output[3])
        if not self.phase_timing.evaluating:
            self.phase_timing.generation_seconds += time.perf_counter() - started
            self.phase_timing.completion_tokens += sum(len(ids) for ids in output[1])
            self.last_completion_ids = output[1]
        return output

    def _log_tool_use(self, completions: list[list[dict[str, Any]]]) -> None:
        """Beside TRL's ``tools/call_frequency`` and ``tools/failure_frequency``: the share of completions that
        called a tool and the assistant turns per completion, over every process's completions."""
        mode = "train" if self.model.training else "eval"
        per_completion = torch.tensor(
            [[float(called_a_tool(completion)), float(len(assistant_turns(completion)))] for completion in completions],
            device=self.accelerator.device,
        )
        gathered = self.accelerator.gather(per_completion)
        self._metrics[mode]["tools/use_share"].append(gathered[:, 0].mean().item())
        self._metrics[mode]["tools/turns"].append(gathered[:, 1].mean().item())

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        started = time.perf_counter()
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.phase_timing.evaluating:
            self.phase_timing.reward_seconds += time.perf_counter() - started
        return rewards

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        started = time.perf_counter()
        self.phase_timing.evaluating = True
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.phase_timing.evaluating = False
            self.phase_timing.evaluation_seconds += time.perf_counter() - started


# What a transformers generation config samples with, and ignores when greedy.
_SAMPLING_ONLY_FLAGS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


@dataclass(frozen=True)
class ScoredBatch:
    """What one generation batch produced, as a training step scores it: each completion as the rewards saw it
    (text, or messages with tool turns), its prompt's and its own token ids (the tools' results included), every
    reward's value for it (``rewards[completion, reward]`` in the trainer's order; NaN: not applicable), and the
    batch's tool-use metrics (TRL's ``tools/call_frequency`` and ``tools/failure_frequency``, the project's
    ``tools/use_share`` and ``tools/turns``; none without tools)."""

    completions: list[Any]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    rewards: np.ndarray
    tool_metrics: dict[str, float]


class ScoringGRPOTrainer(TimedGRPOTrainer):
    """``GRPOTrainer`` that generates and scores held-out rows through its own path (transformers or vLLM,
    ``rollout_func``, tools and environments, reward functions and models) without training, for validation.

    :meth:`generate_and_score` runs ``_generate_and_score_completions`` on the rows, each repeated once per sample
    as TRL's sampler repeats a prompt, in eval mode (``num_generations_eval`` completions per prompt), greedy or
    with the trainer's own sampling settings, and keeps the completions and rewards it produced.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generated: tuple | None = None
        self._rewards: torch.Tensor | None = None

    def _generate(self, prompts: list) -> tuple:
        self._generated = super()._generate(prompts)
        return self._generated

    def release(self) -> None:
        """Let go of the vLLM backend before the next model's trainer starts its own: the server's weight-update
        group (TRL closes it only when the process exits), or the colocated engine and its GPU memory."""
        if not self.use_vllm:
            return
        client = getattr(self.vllm_generation, "vllm_client", None)
        if client is not None:
            client.close_communicator()
        if getattr(self.vllm_generation, "llm", None) is not None:
            self.vllm_generation.llm = None
            gc.collect()
            torch.cuda.empty_cache()

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        self._rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards

    @contextmanager
    def _decoding(self, greedy: bool, samples: int) -> Iterator[None]:
        """``samples`` completions per prompt, greedy (the most likely token at every step) or sampled as training
        samples; the trainer's settings are restored afterwards."""
        saved = self.num_generations_eval, self.model.training
        self.num_generations_eval = samples
        if self.use_vllm:
            backend = self.vllm_generation
            kept = backend.generation_kwargs
            # vLLM decodes greedily at temperature 0; generation_kwargs override the trainer's temperature.
            backend.generation_kwargs = {**kept, "temperature": 0.0} if greedy else kept
        else:
            kept = self.generation_config, self.generation_kwargs
            if greedy:
                # Unset, not left as training set them: transformers warns of sampling flags in a greedy call.
                unset = {flag: None for flag in _SAMPLING_ONLY_FLAGS}
                self.generation_config = copy.deepcopy(self.generation_config)
                self.generation_config.update(do_sample=False, **unset)
                self.generation_kwargs = {**self.generation_kwargs, "do_sample": False} | {
                    flag: None for flag in self.generation_kwargs if flag in unset
                }
        self.model.eval()
        try:
            yield
        finally:
            self.num_generations_eval = saved[0]
            self.model.train(saved[1])
            if self.use_vllm:
                self.vllm_generation.generation_kwargs = kept
            else:
                self.generation_config, self.generation_kwargs = kept

    def generate_and_score(self, rows: list[dict[str, Any]], samples: int, greedy: bool) -> ScoredBatch:
        """``samples`` completions of each of ``rows`` (dataset rows as the trainer takes them), scored."""
        self._metrics["eval"].clear()
        with self._decoding(greedy, samples):
            self._generate_and_score_completions([row for row in rows for _ in range(samples)])
        prompt_ids, completion_ids, _, completions, *_ = self._generated
        tool_metrics = {name: values[-1] for name, values in self._metrics["eval"].items() if name.startswith("tools/")}
        return ScoredBatch(
            list(completions),
            [list(ids) for ids in prompt_ids],
            [list(ids) for ids in completion_ids],
            self._rewards.double().cpu().numpy(),
            tool_metrics,
        )

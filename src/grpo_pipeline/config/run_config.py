"""One variant's run configuration: its parameters parsed, checked and resolved once.

:func:`resolve_run_config` parses the variant's parameters (with the seed-config overlay applied to the raw
``training`` section first), resolves the rewards (one name each) and builds ``trl.GRPOConfig`` (and the warm
start's ``trl.SFTConfig``) so that TRL's own checks run, for the number of processes the run will train on;
every problem comes back in one :class:`ParameterError`. The pre-run hook resolves it and the pipeline's first
node hands the same object on (:func:`resolved_once`); the training processes of a launched run rebuild it from
:meth:`RunConfig.to_json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from grpo_pipeline.config.schema import ModelParams, TrlConfigSection, VariantParams, invalid_parameters, parse_section
from grpo_pipeline.config.seed_overlay import apply_seed_config
from grpo_pipeline.config.trl_config import build_trl_config, optimizer_problems
from grpo_pipeline.errors import ParameterError

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl import GRPOConfig, SFTConfig

    from grpo_pipeline.rewards import RewardSet
    from grpo_pipeline.tools import ToolSet

# What `model.*` decides; the TRL sections' `model_init_kwargs` carry everything else from_pretrained takes.
MODEL_SECTION_KEYS = ("revision", "dtype", "trust_remote_code")


def model_init_kwargs(
    model: ModelParams, section: TrlConfigSection | None = None, where: str = "training"
) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments as TRL takes them (``model_init_kwargs``): the model section's revision,
    dtype and remote-code choice plus the TRL section's own ``model_init_kwargs`` (``attn_implementation``,
    ``quantization_config``, ...), safetensors only unless those say otherwise."""
    extra = ((section.model_extra or {}).get("model_init_kwargs") if section else None) or {}
    if repeated := sorted(set(extra) & set(MODEL_SECTION_KEYS)):
        raise invalid_parameters(
            [
                f"parameter '{where}.model_init_kwargs' sets {repeated}: the model section decides those "
                "(model.revision, model.dtype, model.trust_remote_code); set them there"
            ]
        )
    return {"use_safetensors": True, **{key: getattr(model, key) for key in MODEL_SECTION_KEYS}, **extra}


@dataclass(frozen=True)
class RunConfig:
    """A variant's parameters, typed and checked, with what is derived from them: the rewards and TRL's configs."""

    variant: str
    params: VariantParams
    seed_config_mapping: tuple[str, ...] = ()

    def where(self, key: str) -> str:
        """A parameter's full name, for messages: ``where("training")`` -> ``debug.training``."""
        return f"{self.variant}.{key}"

    @cached_property
    def tools(self) -> ToolSet:
        """The tools and environments the model may use while it generates (``run.tools``, ``run.environment``)."""
        from grpo_pipeline.tools import resolve_tool_set  # noqa: PLC0415 (imports the user's tools)

        run = self.params.run
        return resolve_tool_set(run.tools, run.environment, self.where("run"))

    @cached_property
    def rewards(self) -> RewardSet:
        """The run's rewards in TRL's order, an environment's own reward (``get_reward``) last."""
        from grpo_pipeline.rewards import resolve_rewards  # noqa: PLC0415 (imports TRL's rewards)

        tools = self.tools
        return resolve_rewards(self.params.reward, self.where("reward"), tools.reward_types(), tools.active)

    @property
    def model_init_kwargs(self) -> dict[str, Any]:
        """How the run loads its model (``GRPOConfig.model_init_kwargs``): the trainer, and validation for the base."""
        return model_init_kwargs(self.params.model, self.params.training, self.where("training"))

    def grpo_config_kwargs(self) -> dict[str, Any]:
        """``trl.GRPOConfig``'s arguments: the training section as written, plus what the project sets from the other
        sections (seed, reward weights, model loading) and its trackers."""
        training = self.params.training.model_dump(exclude={"report_to", "model_init_kwargs"})
        requested = (self.params.training.model_extra or {}).get("report_to") or []
        # MLflow always gets every metric, through the project's callback into the run kedro-mlflow opened; TRL's
        # own MLflow callback would log them a second time into a run of its own.
        trackers = [requested] if isinstance(requested, str) else list(requested)
        if "all" in trackers:
            raise invalid_parameters(
                [
                    f"parameter '{self.where('training.report_to')}' = 'all': list the trackers to add, e.g. "
                    "[tensorboard, wandb]; MLflow is always on"
                ]
            )
        trackers = [tracker for tracker in trackers if tracker not in ("mlflow", "none")]
        return {
            # Every parameter takes part in every forward pass; True would only cost DDP an extra graph traversal.
            "ddp_find_unused_parameters": False,
            **training,
            "model_init_kwargs": self.model_init_kwargs,
            "reward_weights": self.rewards.config_weights,
            "seed": self.params.seed,
            "data_seed": self.params.seed,
            "report_to": trackers or "none",
            # Resuming a crashed run needs the optimizer state in every checkpoint.
            "save_only_model": False,
        }

    def build_grpo_config(self, world_size: int | None = None) -> GRPOConfig:
        """``trl.GRPOConfig`` as a training process of this run builds it (``world_size``: as the launched run's
        processes will, from this one); TRL's own checks become a :class:`ParameterError`."""
        return build_trl_config("GRPOConfig", self.grpo_config_kwargs(), self.where("training"), world_size)

    @cached_property
    def grpo_config(self) -> GRPOConfig:
        """The run's ``trl.GRPOConfig``, for reading its values (TRL's defaults included) outside the trainer."""
        return self.build_grpo_config(self.params.distributed.num_processes)

    def build_sft_config(self, output_dir: str) -> SFTConfig:
        """The warm start's ``trl.SFTConfig``, training into ``output_dir``."""
        warm_start = self.params.warm_start
        if warm_start is None:
            raise ValueError(f"{self.variant} has no warm start")
        kwargs = {
            "report_to": "none",
            "save_strategy": "no",
            **warm_start.sft.model_dump(exclude={"model_init_kwargs"}),
            "output_dir": output_dir,
            "model_init_kwargs": model_init_kwargs(self.params.model, warm_start.sft, self.where("warm_start.sft")),
            "seed": self.params.seed,
            "data_seed": self.params.seed,
        }
        return build_trl_config("SFTConfig", kwargs, self.where("warm_start.sft"))

    def build_lora_config(self) -> LoraConfig | None:
        """The adapters' ``peft.LoraConfig`` (TRL's ``peft_config``; peft fills it in when it wraps the model, so a
        new one each time), None for full fine-tuning; peft's own checks become a :class:`ParameterError`."""
        peft = self.params.peft
        if peft is None:
            return None
        return build_trl_config("LoraConfig", {**peft.config_values(), "task_type": "CAUSAL_LM"}, self.where("peft"))

    def to_json(self) -> dict[str, Any]:
        """The run configuration as JSON, for another process (:meth:`from_json`)."""
        return {
            "variant": self.variant,
            "params": self.params.model_dump(mode="json"),
            "seed_config_mapping": list(self.seed_config_mapping),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunConfig:
        return cls(
            variant=payload["variant"],
            params=VariantParams.model_validate(payload["params"]),
            seed_config_mapping=tuple(payload["seed_config_mapping"]),
        )

    def replace_training(self, **values: Any) -> RunConfig:
        """This configuration with ``values`` set in the training section."""
        training = type(self.params.training).model_validate({**self.params.training.model_dump(), **values})
        return RunConfig(self.variant, self.params.model_copy(update={"training": training}), self.seed_config_mapping)


def _seed_config_applied(raw: dict[str, Any], variant: str) -> tuple[dict[str, Any], list[str]]:
    """``raw`` with ``run.seed_config`` applied to its training section, and the overlay's mapping lines."""
    run, training = raw.get("run"), raw.get("training")
    seed_config = run.get("seed_config") if isinstance(run, dict) else None
    if not isinstance(seed_config, str) or not isinstance(training, dict):
        return raw, []
    merged, mapping = apply_seed_config(training, seed_config, f"{variant}.run")
    return {**raw, "training": merged}, mapping


def _cross_section_problems(config: RunConfig) -> list[str]:
    """What the rewards and TRL's configs say about the parsed parameters."""
    problems = []
    try:
        names = config.rewards.names
    except ParameterError as error:
        return error.problems
    accuracy = config.params.validation.accuracy_reward
    if accuracy is not None and accuracy not in names:
        problems.append(
            f"parameter '{config.where('validation.accuracy_reward')}' = {accuracy!r} is not one of the run's rewards "
            f"{names}; name one of them, or null"
        )
    # (where, build): each built config is checked again by building the optimizer and scheduler it trains with.
    builds: list[tuple[str | None, Any]] = [("training", lambda: config.grpo_config), (None, config.build_lora_config)]
    if config.params.warm_start is not None:
        builds.append(("warm_start.sft", lambda: config.build_sft_config("sft_output")))
    for where, build in builds:
        try:
            built = build()
        except ParameterError as error:
            problems += error.problems
        else:
            problems += optimizer_problems(built, config.where(where)) if where is not None else []
    return problems


def resolve_run_config(raw: dict[str, Any], variant: str) -> RunConfig:
    """``variant``'s parameters ``raw`` parsed, checked and resolved; one ParameterError listing every problem."""
    with_overlay, mapping = _seed_config_applied(raw, variant)
    params = parse_section(VariantParams, with_overlay, variant)
    config = RunConfig(variant, params, tuple(mapping))
    if problems := _cross_section_problems(config):
        raise invalid_parameters(problems)
    return config


_resolved: dict[tuple[str, str, str], RunConfig] = {}


def resolved_once(raw: dict[str, Any], variant: str) -> RunConfig:
    """:func:`resolve_run_config`, once per run: the same parameters give the same object until :func:`forget_resolved`
    (the hooks resolve before the run and forget after it, the first node takes the same object)."""
    key = (variant, os.getcwd(), json.dumps(raw, sort_keys=True, default=str))
    if key not in _resolved:
        _resolved[key] = resolve_run_config(raw, variant)
    return _resolved[key]


def forget_resolved() -> None:
    _resolved.clear()

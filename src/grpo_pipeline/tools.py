"""Tools and environments for agentic GRPO, as ``trl.GRPOTrainer(tools=..., environment_factory=...)`` takes them.

A tool is a plain function (sync or async) with type hints and a Google-style docstring: TRL describes it to the
model from those (transformers' ``get_json_schema``), so a tool without them is refused here, before any work.
An environment is a callable (usually a class) that makes one environment per rollout: its public methods are
its tools, ``reset(**row)`` starts a rollout (a returned string is appended to the last user message) and an
optional ``get_reward()`` scores the finished rollout, counted as one more reward named after the class, weight 1.
A mapping ``{name: factory}`` picks each row's environment by its ``environment`` column.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grpo_pipeline.config.schema import invalid_parameters
from grpo_pipeline.imports import import_object

ENVIRONMENT_COLUMN = "environment"  # the data column that picks a row's environment, as TRL reads it
_NOT_TOOLS = ("reset", "get_reward")  # an environment's methods that TRL does not offer the model


def assistant_turns(completion: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's own messages in a conversational completion: not the tools' answers between them."""
    return [message for message in completion if message.get("role", "assistant") == "assistant"]


def called_a_tool(completion: list[dict[str, Any]]) -> bool:
    return any(message.get("tool_calls") for message in assistant_turns(completion))


def tool_problem(function: Any) -> str | None:
    """Why TRL cannot offer ``function`` to the model as a tool, or None."""
    from transformers.utils.chat_template_utils import (  # noqa: PLC0415 (transformers takes seconds to import)
        DocstringParsingException,
        TypeHintParsingException,
        get_json_schema,
    )

    if not callable(function):
        return f"it is a {type(function).__name__}, not a function"
    try:
        get_json_schema(function)
    except (DocstringParsingException, TypeHintParsingException) as error:
        return (
            f"{error}; TRL describes a tool to the model from its type hints and Google-style docstring "
            "(a summary line, then 'Args:' with one line per argument)"
        )
    return None


def environment_tools(environment: Any) -> list[Callable[..., Any]]:
    """An environment's tools as TRL finds them: the public functions of its class (but ``reset`` and
    ``get_reward``), bound to the instance."""
    return [
        getattr(environment, name)
        for name, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction)
        if name not in _NOT_TOOLS and not name.startswith("_")
    ]


def has_method(environment: Any, name: str) -> bool:
    """Whether the environment's class defines ``name`` as TRL looks for it (a function on the class)."""
    return any(member == name for member, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction))


@dataclass(frozen=True)
class ToolSet:
    """The run's tools and environments, resolved and checked: what GRPOTrainer gets, and what validation uses."""

    tools: tuple[Callable[..., Any], ...] = ()
    # Environment factories by name; the one key None: one environment for every row.
    environments: Mapping[str | None, Callable[[], Any]] | None = None
    # One instance of each environment, made when checking it (as TRL probes each at init): its tools' schemas.
    probes: Mapping[str | None, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.tools) or self.environments is not None

    @property
    def multi_environment(self) -> bool:
        return self.environments is not None and None not in self.environments

    def trainer_kwargs(self) -> dict[str, Any]:
        """``GRPOTrainer``'s ``tools`` and ``environment_factory``."""
        if self.environments is None:
            factory = None
        else:
            factory = dict(self.environments) if self.multi_environment else self.environments[None]
        return {"tools": list(self.tools) or None, "environment_factory": factory}

    def reward_types(self) -> list[type]:
        """The environment classes that score their rollouts (``get_reward``), each once, in TRL's order."""
        types: list[type] = []
        for probe in self.probes.values():
            if has_method(probe, "get_reward") and type(probe) not in types:
                types.append(type(probe))
        return types

    def tools_for(self, environment: str | None = None) -> list[Callable[..., Any]]:
        """The tools a row with ``environment`` (its ``environment`` column, None for a single one) is offered."""
        if self.environments is None:
            return list(self.tools)
        return [*self.tools, *environment_tools(self.probes[environment])]

    def row_tools(self, row: Mapping[str, Any]) -> list[Callable[..., Any]] | None:
        """The tools the trainer renders into ``row``'s prompt; None without any (``apply_chat_template``'s
        ``tools``: some templates write tool boilerplate even for an empty list)."""
        if not self.active:
            return None
        return self.tools_for(row.get(ENVIRONMENT_COLUMN) if self.multi_environment else None) or None

    def new_environment(self, row: Mapping[str, Any]) -> tuple[Any, list[Callable[..., Any]]]:
        """A fresh environment for ``row`` (none without environments) and the tools its rollout is offered."""
        if self.environments is None:
            return None, list(self.tools)
        environment = self.environments[row.get(ENVIRONMENT_COLUMN) if self.multi_environment else None]()
        return environment, [*self.tools, *environment_tools(environment)]


def environment_column_problem(values: list[Any], tool_set: ToolSet) -> str | None:
    """What is wrong with the ``environment`` column of a run with several environments (``values``; None when the
    column is missing), or None."""
    if not tool_set.multi_environment:
        return None
    names = sorted(name for name in tool_set.environments if name is not None)
    if values is None:
        return f"there is no '{ENVIRONMENT_COLUMN}' column to pick each row's environment from {names}"
    unknown = sorted({str(value) for value in values if value not in tool_set.environments})
    if unknown:
        return f"column '{ENVIRONMENT_COLUMN}' has {unknown[:5]}, which are not among the environments {names}"
    return None


def _environment_problems(factory: Any, where: str) -> tuple[Any, list[str]]:
    """One instance of the environment ``factory`` makes, and what keeps TRL from using it."""
    if not callable(factory):
        return None, [f"{where}: it is a {type(factory).__name__}, not a class or function that makes environments"]
    try:
        environment = factory()
    except Exception as error:  # the user's constructor: any failure is reported
        return None, [f"{where}: making an environment failed: {type(error).__name__}: {error}"]
    if not has_method(environment, "reset"):
        return environment, [
            f"{where}: {type(environment).__name__} has no reset method; TRL calls reset(**row) before each rollout "
            "(it may return text to add to the prompt, or None)"
        ]
    tools = environment_tools(environment)
    problems = [
        f"{where}: tool {type(environment).__name__}.{tool.__name__}: {problem}"
        for tool in tools
        if (problem := tool_problem(tool))
    ]
    if not tools:
        problems.append(f"{where}: {type(environment).__name__} has no public method to offer the model as a tool")
    return environment, problems


def _imported(path: str, kind: str, example: str, where: str, problems: list[str]) -> Any:
    """The object at ``path``, or None with the problem added to ``problems``."""
    try:
        return import_object(path, kind, example)
    except ValueError as error:
        problems.append(f"{where}: {error}")
        return None


def resolve_tool_set(tools: list[str], environment: str | Mapping[str, str] | None, prefix: str = "run") -> ToolSet:
    """The tools at the import paths ``tools`` and the environment(s) ``environment`` names, checked as TRL needs
    them; one :class:`~grpo_pipeline.errors.ParameterError` listing every problem."""
    problems: list[str] = []
    functions = []
    for index, path in enumerate(tools):
        where = f"parameter '{prefix}.tools[{index}]' = {path!r}"
        function = _imported(path, "tool", "my_package.tools:multiply", where, problems)
        if function is not None:
            if problem := tool_problem(function):
                problems.append(f"{where}: {problem}")
            functions.append(function)
    factories: dict[str | None, Any] = {}
    probes: dict[str | None, Any] = {}
    named = {None: environment} if isinstance(environment, str) else dict(environment or {})
    for name, path in named.items():
        where = f"parameter '{prefix}.environment{'' if name is None else '.' + name}' = {path!r}"
        factory = _imported(path, "environment", "my_package.envs:Sandbox", where, problems)
        if factory is not None:
            probes[name], found = _environment_problems(factory, where)
            problems += found
            factories[name] = factory
    if problems:
        raise invalid_parameters(problems)
    return ToolSet(tuple(functions), factories if environment is not None else None, probes)

"""Prompts and completions as text for the records (reports, sample tables): conversational ones included, so that
tool use shows."""

from __future__ import annotations

from typing import Any


def display_text(value: Any) -> str:
    """A prompt or completion as text for a report: the last message's content for conversational data."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function", call)
    arguments = function.get("arguments") or {}
    shown = (
        ", ".join(f"{key}={value!r}" for key, value in arguments.items()) if isinstance(arguments, dict) else arguments
    )
    return f"{function.get('name')}({shown})"


def transcript(completion: Any) -> str:
    """A completion as text for a report: every turn of a conversational one, so that tool use shows (``call
    multiply(a=12, b=3) -> [multiply: 36] -> 36``: the model's calls, the tools' answers, its replies)."""
    if not isinstance(completion, list):
        return str(completion)
    turns = []
    for message in completion:
        if message.get("role") == "tool":
            turns.append(f"[{message.get('name')}: {message.get('content')}]")
            continue
        calls = [f"call {_call_text(call)}" for call in message.get("tool_calls") or []]
        turns += [text for text in (str(message.get("content") or "").strip(), *calls) if text]
    return " -> ".join(turns)

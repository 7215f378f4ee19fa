"""Calculator tools, as ``trl.GRPOTrainer(tools=...)`` takes them: ``multiply`` for ``grpo_tools``, ``calculate``
for the GPU recipe (``conf/gpu/calculator``).

TRL shows the model a tool's name, type hints and Google-style docstring, so those are its interface.
"""

from __future__ import annotations

import ast
import operator


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    # The model's call is parsed text: an argument it garbled arrives as a string, which is an error, not a factor.
    if not isinstance(a, int) or not isinstance(b, int):
        raise TypeError(f"multiply takes two integers, got a={a!r} and b={b!r}")
    return a * b


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](left, right)
    raise ValueError(f"unsupported expression: {ast.unparse(node)!r}")


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression with numbers, + - * / // % ** and parentheses.

    Args:
        expression: The expression, e.g. "(48 - 12) / 3".
    """
    # Parsed, never eval'd: the model's text reaches no Python beyond arithmetic.
    value = _evaluate(ast.parse(str(expression), mode="eval").body)
    return int(value) if float(value).is_integer() else round(value, 6)

"""Objects named by import path in parameters: ``package.module:attribute`` (or ``package.module.attribute``)."""

from __future__ import annotations

import importlib
from typing import Any


def is_import_path(text: str) -> bool:
    return ":" in text or "." in text


def import_object(import_path: str, parameter: str, example: str) -> Any:
    """The object at ``import_path``; a ValueError naming ``parameter`` when it is not one or does not import."""
    module_name, _, attribute = import_path.rpartition(":") if ":" in import_path else import_path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(
            f"{parameter} '{import_path}' is not an import path; write it as 'package.module:function', "
            f"e.g. '{example}'"
        )
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"{parameter} '{import_path}' cannot be imported ({error}); check the module is on PYTHONPATH "
            "(e.g. under src/) and the function name"
        ) from None

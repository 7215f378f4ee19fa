"""Artifacts identified by a fingerprint of what made them: reused while it matches, otherwise made again.

The tiny base model, the warm-started model and training's recovery checkpoints each record the fingerprint of
their inputs. :func:`ensure_artifact` reuses a directory whose recorded fingerprint equals the new one and
otherwise makes it afresh, written atomically (an interrupted build leaves the old artifact or none, never half
of one); :func:`differences` says what changed, for a message or a log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpo_pipeline.atomic import atomic_directory

Fingerprint = dict[str, Any]


def fingerprint_hash(fingerprint: Fingerprint) -> str:
    """A short, stable hash of ``fingerprint``."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(old: Fingerprint, new: Fingerprint) -> list[str]:
    """``name: old -> new`` for every entry of ``new`` that ``old`` records differently."""
    return [f"{key}: {old.get(key)!r} -> {value!r}" for key, value in new.items() if old.get(key) != value]


def read_record(directory: str | Path, record_file: str) -> dict[str, Any] | None:
    """What ``directory`` records about how it was made, or None when it records nothing."""
    path = Path(directory) / record_file
    return json.loads(path.read_text()) if path.is_file() else None


def ensure_artifact(
    directory: str | Path, record_file: str, fingerprint: Fingerprint, make: Callable[[Path], dict[str, Any] | None]
) -> bool:
    """Reuse ``directory`` when it records ``fingerprint`` (returns True); otherwise ``make`` the artifact into a
    staging directory, which then replaces ``directory`` with a record of the fingerprint and of what ``make``
    returns (returns False)."""
    record = read_record(directory, record_file)
    if record is not None and record.get("fingerprint") == fingerprint:
        return True
    with atomic_directory(Path(directory)) as staging:
        details = make(staging) or {}
        record = {"fingerprint": fingerprint, "hash": fingerprint_hash(fingerprint), **details}
        (staging / record_file).write_text(json.dumps(record, indent=2, default=str))
    return False

"""Atomic writes: a reader sees either the previous complete file or directory or the new one, never a half."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(tree: str | Path) -> None:
    """Give ``tree`` (a file or a folder) and everything under it the mode ``open``/``mkdir`` would under the umask
    (executables keep their execute bits): mkstemp/mkdtemp stage 0600 files and 0700 folders, and safetensors
    writes weights 0600, which another user (a teammate, a serving process) could not read."""
    mask = _umask()
    for path in [Path(tree), *Path(tree).rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o777 & ~mask)
        else:
            path.chmod((0o666 | (path.stat().st_mode & 0o111)) & ~mask)


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory beside ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        follow_umask(staging)
        previous = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(target: str | Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``target`` and rename it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        follow_umask(staging)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))

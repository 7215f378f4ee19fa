"""Crash recovery: which ``checkpoint-N`` folder a run may resume from.

``Trainer`` writes ``checkpoint-N`` in place, file by file, so a process killed mid-save leaves a
folder that looks like a checkpoint but is not one. ``training.trainer.CheckpointCompletionCallback`` writes a
marker into the folder only after the trainer has finished saving it (``on_save``); only folders
with the marker are ever resumed from. The marker also records the run fingerprint (training/fingerprint.py)
and each file's size and checksum: a disk that later cut a file short or changed it (a full disk, a copy
interrupted) makes the checkpoint damaged, and resume skips it for the newest intact one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import xxhash

from grpo_pipeline.atomic import atomic_write_text
from grpo_pipeline.errors import ProjectError

logger = logging.getLogger(__name__)

# transformers' Trainer names its checkpoints checkpoint-N (trainer_utils.PREFIX_CHECKPOINT_DIR); not imported
# from there so that the parameter checks can find a run's checkpoints without loading transformers.
PREFIX_CHECKPOINT_DIR = "checkpoint"
COMPLETE_MARKER = "grpo_checkpoint_complete.json"
RUN_FINISHED_MARKER = "training_finished.json"
_CHECKPOINT_DIR = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_CHUNK = 16 * 2**20
# What this process found checking checkpoints, by folder and the sizes and times of its files.
_checked: dict[tuple[Path, tuple[tuple[Path, int, int], ...]], str | None] = {}
_reported: set[Path] = set()


class CheckpointError(ProjectError, ValueError):
    """A checkpoint named in ``run.resume_from_checkpoint`` that cannot be resumed from."""


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders in ``output_dir``, oldest first."""
    folders = []
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        match = _CHECKPOINT_DIR.match(path.name)
        if match and (path / COMPLETE_MARKER).is_file():
            folders.append((int(match.group(1)), path))
    return [path for _, path in sorted(folders)]


class CheckpointWriteError(ProjectError, OSError):
    """Writing a checkpoint failed (a full disk, a quota, a file-size limit): the run stops naming the folder."""


# How the writers of a checkpoint's files report a failed write without an OSError: torch's archive writer
# ("[enforce fail at inline_container.cc:...]", "PytorchStreamWriter failed writing file ...") and safetensors
# ("Error while serializing: IoError(...)").
_FILE_WRITERS = ("inline_container", "PytorchStreamWriter", "IoError")


def unwritten_checkpoint_error(
    output_dir: str | Path, global_step: int, error: BaseException
) -> CheckpointWriteError | None:
    """What to say when training raised ``error`` while the trainer was writing ``checkpoint-<global_step>`` (the
    folder is there without its completion marker), or None when it was not writing one, or when what failed was
    not a write. A failed write of torch's archive surfaces without its cause, so the folder's file system is probed
    with a small write and its free space read."""
    folder = Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{global_step}"
    if not folder.is_dir() or (folder / COMPLETE_MARKER).is_file():
        return None
    probe = folder / ".grpo_write_probe"
    try:
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as probe_error:
        cause = probe_error.strerror or str(probe_error)
        probe.unlink(missing_ok=True)
    else:
        if not (isinstance(error, OSError) or any(writer in str(error) for writer in _FILE_WRITERS)):
            return None  # something else failed while the checkpoint was written: that error is the one to show
        cause = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    free_mb = shutil.disk_usage(folder).free / 2**20
    earlier = [path for path in complete_checkpoints(output_dir) if path != folder]
    resume = f"the same command resumes from {earlier[-1]}" if earlier else "the same command trains afresh"
    return CheckpointWriteError(
        f"writing checkpoint {folder} failed at training step {global_step} ({cause}; {free_mb:.0f} MB free there). "
        f"It is left incomplete (no {COMPLETE_MARKER}), so no run resumes from it. Free space under {output_dir} "
        f"(or keep fewer checkpoints: training.save_total_limit; or write elsewhere: training.output_dir), then "
        f"{resume}"
    )


def is_auto_resume(setting: str | bool) -> bool:
    """Whether ``resume_from_checkpoint`` lets the pipeline pick the checkpoint (rather than naming one)."""
    return setting is True or setting == "auto"


def resolve_resume_checkpoint(setting: str | bool, output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from for ``run.resume_from_checkpoint``, or None to start fresh.

    ``auto`` takes the newest intact complete checkpoint, skipping damaged ones with a warning naming the file.
    """
    output_dir = Path(output_dir)
    if setting is False:
        return None
    if is_auto_resume(setting):
        if (output_dir / RUN_FINISHED_MARKER).is_file():
            return None
        for candidate in reversed(complete_checkpoints(output_dir)):
            if (damage := checkpoint_damage(candidate)) is None:
                return candidate
            if candidate not in _reported:  # the pre-run check and training both ask; say it once
                _reported.add(candidate)
                logger.warning("Skipping damaged checkpoint %s: %s", candidate, damage)
        if setting is True:
            raise CheckpointError(
                f"run.resume_from_checkpoint=true but '{output_dir}' holds no intact complete checkpoint-N folder"
            )
        return None
    path = Path(setting)
    if not (path / COMPLETE_MARKER).is_file():
        raise CheckpointError(
            f"run.resume_from_checkpoint='{setting}' is not a complete checkpoint folder "
            f"(no {COMPLETE_MARKER}); use 'auto' or the path of a checkpoint-N folder the pipeline wrote"
        )
    if (damage := checkpoint_damage(path)) is not None:
        raise CheckpointError(
            f"run.resume_from_checkpoint='{setting}' is damaged: {damage}. Name an older checkpoint-N, or use 'auto'"
        )
    return path


def checkpoint_damage(checkpoint: Path) -> str | None:
    """What differs from the sizes and checksums the completion marker recorded, or None when nothing does.

    Markers written before checksums were recorded have nothing to compare with and count as intact. A folder
    whose files have not changed since it was last checked (same sizes and modification times) is not read again.
    """
    files = sorted((path, path.stat()) for path in checkpoint.rglob("*") if path.is_file())
    state = (checkpoint, tuple((path, stat.st_size, stat.st_mtime_ns) for path, stat in files))
    if state not in _checked:
        _checked[state] = _damage(checkpoint)
    return _checked[state]


def _damage(checkpoint: Path) -> str | None:
    try:
        recorded = read_marker(checkpoint).get("files") or {}
    except (OSError, ValueError) as error:
        return f"{checkpoint / COMPLETE_MARKER} cannot be read ({error})"
    for name, expected in recorded.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{path} is missing"
        if (size := path.stat().st_size) != expected["size"]:
            return f"{path} has {size} bytes, {expected['size']} were written"
        if _checksum(path) != expected["xxh3_64"]:
            return f"{path} does not match the checksum recorded when it was written"
    return None


def _checksum(path: Path) -> str:
    digest = xxhash.xxh3_64()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def start_fresh(output_dir: str | Path) -> None:
    """Remove the previous run's recovery checkpoints, so that a crash of this run never resumes from them."""
    output_dir = Path(output_dir)
    for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if _CHECKPOINT_DIR.match(path.name):
            shutil.rmtree(path)
    (output_dir / RUN_FINISHED_MARKER).unlink(missing_ok=True)


def mark_finished(output_dir: str | Path, global_step: int) -> None:
    atomic_write_text(Path(output_dir) / RUN_FINISHED_MARKER, json.dumps({"global_step": global_step}) + "\n")


def read_marker(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / COMPLETE_MARKER).read_text())


def write_marker(folder: Path, global_step: int, mlflow_run_id: str | None, fingerprint: dict[str, Any] | None) -> None:
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "xxh3_64": _checksum(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != COMPLETE_MARKER
    }
    marker = {
        "global_step": global_step,
        "mlflow_run_id": mlflow_run_id,
        "fingerprint": fingerprint,
        "files": files,
    }
    atomic_write_text(folder / COMPLETE_MARKER, json.dumps(marker) + "\n")

"""Crash recovery: which ``checkpoint-N`` folder a run may resume from.

``Trainer`` writes ``checkpoint-N`` in place, file by file, so a process killed mid-save leaves a
folder that looks like a checkpoint but is not one. ``training.trainer.CheckpointCompletionCallback`` writes a
marker into the folder only after the trainer has finished saving it (``on_save``); only folders
with the marker are ever resumed from. The marker also records the run fingerprint (training/fingerprint.py).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from grpo_pipeline.atomic import atomic_write_text

logger = logging.getLogger(__name__)

# transformers' Trainer names its checkpoints checkpoint-N (trainer_utils.PREFIX_CHECKPOINT_DIR); not imported
# from there so that the parameter checks can find a run's checkpoints without loading transformers.
PREFIX_CHECKPOINT_DIR = "checkpoint"
COMPLETE_MARKER = "grpo_checkpoint_complete.json"
RUN_FINISHED_MARKER = "training_finished.json"
_CHECKPOINT_DIR = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders in ``output_dir``, oldest first."""
    folders = []
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        match = _CHECKPOINT_DIR.match(path.name)
        if match and (path / COMPLETE_MARKER).is_file():
            folders.append((int(match.group(1)), path))
    return [path for _, path in sorted(folders)]


def is_auto_resume(setting: str | bool) -> bool:
    """Whether ``resume_from_checkpoint`` lets the pipeline pick the checkpoint (rather than naming one)."""
    return setting is True or setting == "auto"


def resolve_resume_checkpoint(setting: str | bool, output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from for ``run.resume_from_checkpoint``, or None to start fresh."""
    output_dir = Path(output_dir)
    if setting is False:
        return None
    if is_auto_resume(setting):
        if (output_dir / RUN_FINISHED_MARKER).is_file():
            return None
        candidates = complete_checkpoints(output_dir)
        if not candidates and setting is True:
            raise ValueError(
                f"run.resume_from_checkpoint=true but '{output_dir}' holds no complete checkpoint-N folder"
            )
        return candidates[-1] if candidates else None
    path = Path(setting)
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(
            f"run.resume_from_checkpoint='{setting}' is not a complete checkpoint folder "
            f"(no {COMPLETE_MARKER}); use 'auto' or the path of a checkpoint-N folder the pipeline wrote"
        )
    return path


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
    marker = {"global_step": global_step, "mlflow_run_id": mlflow_run_id, "fingerprint": fingerprint}
    atomic_write_text(folder / COMPLETE_MARKER, json.dumps(marker) + "\n")

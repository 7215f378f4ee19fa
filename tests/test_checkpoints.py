"""Recovery checkpoints: the completion marker's sizes and checksums decide which checkpoint a rerun resumes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from grpo_pipeline.training.checkpoints import CheckpointError, resolve_resume_checkpoint, write_marker


def saved_checkpoint(output_dir: Path, step: int) -> Path:
    folder = output_dir / f"checkpoint-{step}"
    (folder / "nested").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "nested" / "optimizer.pt").write_bytes(b"optimizer state %d" % step)
    write_marker(folder, step, "run-id", None)
    return folder


def test_a_damaged_newest_checkpoint_is_skipped_for_the_newest_intact_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older, newest = saved_checkpoint(tmp_path, 10), saved_checkpoint(tmp_path, 20)
    assert resolve_resume_checkpoint("auto", tmp_path) == newest
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING):
        assert resolve_resume_checkpoint("auto", tmp_path) == older
    (line,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert line == f"Skipping damaged checkpoint {newest}: {weights} has 1000 bytes, 16384 were written"


def test_a_changed_byte_or_a_missing_file_is_damage(tmp_path: Path) -> None:
    checkpoint = saved_checkpoint(tmp_path, 5)
    state = checkpoint / "nested" / "optimizer.pt"
    state.write_bytes(state.read_bytes().replace(b"state", b"STATE"))  # same size
    with pytest.raises(
        CheckpointError, match=r"optimizer\.pt does not match the checksum recorded when it was written"
    ):
        resolve_resume_checkpoint(str(checkpoint), tmp_path)
    state.unlink()
    with pytest.raises(CheckpointError, match=r"is damaged: .*optimizer\.pt is missing\. Name an older checkpoint-N"):
        resolve_resume_checkpoint(str(checkpoint), tmp_path)
    # auto with nothing intact starts afresh; true (resume or fail) says why it cannot
    assert resolve_resume_checkpoint("auto", tmp_path) is None
    with pytest.raises(CheckpointError, match="holds no intact complete checkpoint-N folder"):
        resolve_resume_checkpoint(True, tmp_path)

"""Files the project writes are as readable as the umask says, like those transformers writes beside them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_pipeline.atomic import atomic_directory, atomic_write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_atomic_files_and_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    atomic_write_text(tmp_path / "report.json", "{}")
    with atomic_directory(tmp_path / "checkpoint") as staging:
        (staging / "model.safetensors").write_bytes(b"weights")
    assert mode(tmp_path / "report.json") == 0o666 & ~umask
    assert mode(tmp_path / "checkpoint") == 0o777 & ~umask
    assert mode(tmp_path / "checkpoint" / "model.safetensors") == 0o666 & ~umask


def test_a_run_leaves_reports_and_weights_readable_as_the_umask_says(debug_run: tuple[Path, object]) -> None:
    project = debug_run[0]
    mask = os.umask(0o022)
    os.umask(mask)
    written = [
        project / "data/08_reporting/debug/validation_report.json",
        project / "data/08_reporting/debug/reward_curve.png",
        project / "data/06_models/debug/checkpoint/model.safetensors",
        project / "data/06_models/debug/checkpoint/trainer_state.json",
        project / "data/06_models/debug/trainer_output/checkpoint-150/optimizer.pt",
    ]
    assert {path.name: oct(mode(path)) for path in written} == {path.name: oct(0o666 & ~mask) for path in written}
    folders = [project / "data/06_models/debug/checkpoint", project / "data/06_models/debug/warm_start"]
    assert {oct(mode(path)) for path in folders} == {oct(0o777 & ~mask)}

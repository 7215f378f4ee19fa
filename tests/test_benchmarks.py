"""The bare-TRL benchmark script still runs against the variants' current parameter files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.subprocess
@pytest.mark.trainer
def test_bare_trl_script_trains_the_debug_variant(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "bare_trl_grpo.py"),
            f"--project={PROJECT_ROOT}",
            f"--output={tmp_path}",
            "--max-steps=2",
        ],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["variant"] == "debug"

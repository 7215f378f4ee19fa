"""Both notebooks run headless (nbclient) against a finished grpo_debug run, so they cannot rot."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

Run = tuple[Path, subprocess.CompletedProcess[str]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_explore_prompts.ipynb", "02_compare_runs.ipynb"])
def test_notebook_executes(debug_run: Run, name: str) -> None:
    project, _ = debug_run
    path = project / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the notebook drew no figure"

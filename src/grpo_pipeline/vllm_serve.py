"""Start the vLLM server a variant's server-mode training talks to: ``make vllm-serve VARIANT=full ENV=gpu``.

It reads the variant's parameters through Kedro (so ``--env`` and ``--params`` apply as for ``kedro run``),
builds the tiny model first where the variant builds one, and runs ``trl vllm-serve`` for that model on
the host and port the trainer will call (127.0.0.1 unless a parameter says otherwise).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from omegaconf import OmegaConf

from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.schema import VariantParams, parse_section
from grpo_pipeline.config.trl_config import trl_values
from grpo_pipeline.models.loading import ensure_base_model
from grpo_pipeline.training.vllm_preflight import serve_command
from grpo_pipeline.variants import DEFAULT_VARIANT, unknown_variant


def runtime_params(params: str | None) -> dict:
    """``kedro run --params`` syntax (``a.b=1,c.d=x``) as a nested mapping, values typed as in YAML."""
    return OmegaConf.to_container(OmegaConf.from_dotlist(params.split(","))) if params else {}


def variant_serve_command(project: Path, variant: str, env: str | None, params: str | None) -> str:
    raw = load_parameters(project / "conf", env, runtime_params(params))[variant]
    # Parsed, not built: GRPOConfig checks the training device, and the server may be started on another machine.
    params = parse_section(VariantParams, raw, variant)
    model_path = ensure_base_model(params.model)
    return serve_command(
        model_path, trl_values("GRPOConfig", params.training.model_dump()), params.model.trust_remote_code
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="a variant found in the project's conf/")
    parser.add_argument("--env", default=None, help="Kedro environment, e.g. gpu")
    parser.add_argument(
        "--params", default=None, help="as kedro run --params, e.g. full.training.vllm_server_port=8001"
    )
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--trl", default=str(Path(sys.executable).with_name("trl")), help="the trl executable (default: this venv's)"
    )
    parser.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    args = parser.parse_args(argv)
    if problem := unknown_variant(args.variant, args.project / "conf"):
        parser.error(problem)
    command = variant_serve_command(args.project.resolve(), args.variant, args.env, args.params)
    print(command, flush=True)
    if not args.print_only:
        arguments = [args.trl, *shlex.split(command)[1:]]
        os.execv(arguments[0], arguments)


if __name__ == "__main__":
    main()

"""The wheels a bare GPU machine needs to run the pipeline: what the project requires and that machine lacks.

The lent GPU machines have a CUDA torch, transformers, peft, accelerate, pandas, pyarrow and more
(`IMAGE_PACKAGES`, from their package list), no network and no vLLM. This walks the project's runtime
requirements (no extras) through the installed distributions here, leaves out what the image has, and
downloads the rest as wheels for the image's Python (3.12, manylinux x86-64), the versions installed here,
into `.whl/` (git-ignored; carried to the machine, 64 MiB at most):

    python benchmarks/gpu/wheelhouse.py --output .whl
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

IMAGE_PACKAGES = frozenset(
    canonicalize_name(name)
    for name in Path(__file__).with_name("image_packages.txt").read_text().splitlines()
    if name and not name.startswith("#")
)
# Needed on the machine only to build a wheel or serve a UI: not for `kedro run` and pytest.
NOT_NEEDED = frozenset({"kedro-viz", "kedro-telemetry", "vllm"})
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def runtime_closure(requirements: list[str]) -> dict[str, str]:
    """Every installed distribution ``requirements`` need at run time (markers evaluated here, no extras):
    name -> version."""
    found: dict[str, str] = {}
    pending = [Requirement(line).name for line in requirements]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found or name in NOT_NEEDED:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(".whl"))
    parser.add_argument("--list", action="store_true", help="print the wheels to fetch and stop")
    args = parser.parse_args()
    needed = {
        name: found
        for name, found in runtime_closure(tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]).items()
        if name not in IMAGE_PACKAGES
    }
    pins = [f"{name}=={found}" for name, found in sorted(needed.items())]
    print("\n".join(pins))
    if args.list:
        return
    args.output.mkdir(parents=True, exist_ok=True)
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
    command += ["--implementation", "cp", *platforms, "-d", str(args.output), *pins]
    subprocess.run(command, check=True)
    size = sum(path.stat().st_size for path in args.output.glob("*.whl"))
    print(f"{len(pins)} wheels, {size / 2**20:.1f} MiB in {args.output}")
    if size > 64 * 2**20:
        sys.exit("over the 64 MiB a device call carries: leave some out or install them in two calls")


if __name__ == "__main__":
    main()

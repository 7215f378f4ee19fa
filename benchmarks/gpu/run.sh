#!/usr/bin/env bash
# The GPU benchmark in one call on a lent GPU machine, which has no network: install what its image lacks
# from the carried wheels, run the seed's rows and the generation paths through `kedro run --env=gpu`
# (benchmarks/gpu/seed_rows.py), then `pytest -m gpu` (the GPU tests that need no vLLM; the vLLM ones skip).
#
#   here, once:  python benchmarks/gpu/wheelhouse.py --output .whl     (.whl is git-ignored, ~40 MiB)
#   dry run:     benchmarks/gpu/run.sh /tmp/gpu-rows --dry-run         (here, CPU, tiny model, 2 steps a row)
#   on the GPU:  benchmarks/gpu/run.sh "$OUT"                          (device tool: carry [".whl"])
set -euo pipefail
out=${1:?usage: benchmarks/gpu/run.sh OUT_DIR [--dry-run]}
mode=${2:-}
mkdir -p "$out"
export KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
if [ "$mode" = "--dry-run" ]; then
  python=${PYTHON:-.venv/bin/python}
else
  python=python3
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
"$python" -c "import torch, transformers, trl, kedro; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'kedro', kedro.__version__)" | tee "$out/versions.txt"
status=0
"$python" benchmarks/gpu/seed_rows.py --output "$out" $mode 2>&1 | tee "$out/seed_rows.log" || status=1
"$python" -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/pytest_gpu.txt" || status=1
exit $status

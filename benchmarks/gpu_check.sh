#!/usr/bin/env bash
# The GPU check, on one machine with PySCF and a CUDA GPU: tensors, timings, README's table.
# Writes gpu_check.json and gpu_check.md in the current directory (see benchmarks/gpu_check.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tensors="${GPU_CHECK_TENSORS:-gpu-tensors}"
[ -f "$tensors/manifest.json" ] || python "$here/gpu_check.py" prepare --out "$tensors"
python "$here/gpu_check.py" run --tensors "$tensors" --device cuda --out gpu_check.json "$@"
python "$here/gpu_check.py" table gpu_check.json | tee gpu_check.md

#!/usr/bin/env bash
# One NVIDIA GPU, at most 8 minutes: throughput (eager fp32 vs the fast path), trials sharing the GPU, bf16 vs fp32
# agreement; writes bench/results/gpu_check.md. Without a GPU it stops at once (exit 3). See bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none): it measures GPU throughput; run it on a machine" \
         "with one. \`python bench/gpu_check.py --cpu-smoke\` runs its code paths on a CPU." >&2
    exit 3
fi
PYTHON="${PYTHON:-.venv/bin/python}"
# 8 minutes in all, and a little for Python and CUDA to start.
exec timeout --signal=INT 500 "$PYTHON" bench/gpu_check.py "$@"

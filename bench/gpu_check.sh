#!/usr/bin/env bash
# The prepared GPU check (issue 11): pytest tests/gpu, then the segment benchmark at 768x512, 32 frames,
# 30 steps (eager, batched guidance, compiled), MFU, peak memory against the planner and fp16-vs-fp32
# PSNR; writes bench/results/gpu_<device>.md. Meant to finish in under 8 minutes on one H100.
#
#   bench/gpu_check.sh             # on the GPU machine, from a fresh copy of the tree
#   bench/gpu_check.sh --dry-run   # anywhere: the same steps on the tiny model on the CPU (CI runs it)
#
# The GPU machine has its own PyTorch and no package registry. Packages it lacks travel as wheels in
# bench/wheels/ (git-ignored), filled beforehand on a machine with pip, e.g.:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d bench/wheels diffusers==0.35.1 transformers==4.56.1 av==15.1.0 ...
# (every package of pyproject.toml's dependencies that `python3 -c "import X"` says is missing there).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1

if [ "${1:-}" = "--dry-run" ]; then
    out=${2:-$(mktemp -d)/gpu_dry_run.md}
    exec "$PYTHON" bench/gpu_check.py --dry-run --out "$out"
fi

if ! "$PYTHON" -c "import diffusers, transformers, av, safetensors, pytest" 2>/dev/null; then
    ls bench/wheels/*.whl >/dev/null 2>&1 || { echo "missing packages and no wheels in bench/wheels/" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/unianimate-site bench/wheels/*.whl
    export PYTHONPATH=/tmp/unianimate-site${PYTHONPATH:+:$PYTHONPATH}
fi

log=$(mktemp)
# the GPU tests get 3 minutes; the benchmark the rest
timeout 180 "$PYTHON" -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$log" || true
exec "$PYTHON" bench/gpu_check.py --pytest-log "$log"

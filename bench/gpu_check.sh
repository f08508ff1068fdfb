#!/usr/bin/env bash
# Everything the CUDA backend must show, in one run on a GPU machine: the GPU test suite, the
# attention sweep (validated, then timed), the training-step bench, and the PyTorch comparisons.
#   bash bench/gpu_check.sh [BUILD_DIR] [OUT_DIR]      (defaults: build, gpu-results)
# BUILD_DIR holds cairn and cairn_gpu_tests; its lib/ (if any) is put on LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${2:-gpu-results}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CAIRN_BINARY="$PWD/$BUILD/cairn" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
ldd "$BUILD/cairn" | grep "not found" && echo "missing libraries" && exit 1

echo "== GPU tests"
"$BUILD/cairn_gpu_tests" --gtest_color=no 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |OK \]|errors|GEMMs:|flash fp32" | tail -80
echo "== attention sweep (cairn)"
"$BUILD/cairn" bench attention --device cuda --backward --seq-len "${SEQ_LENS:-1024,2048,4096,8192,16384}" \
  --head-dim 64,128 --tokens 16384 --model-dim 2048 --repeats 10 --warmup 3 --plot "$OUT/attention.svg" 2>&1 | tee "$OUT/attention.txt"
echo "== training step (cairn)"
"$BUILD/cairn" bench train --device cuda --preset base --batch-pairs 16 --seq-len 512 --steps 20 2>&1 | tee "$OUT/train.txt"
echo "== cairn vs PyTorch"
python3 bench/compare_torch_cuda.py --cairn "$BUILD/cairn" --seq-lens "${SEQ_LENS:-1024,2048,4096,8192,16384}" \
  --json-out "$OUT/compare.json" 2>&1 | tee "$OUT/compare.txt"

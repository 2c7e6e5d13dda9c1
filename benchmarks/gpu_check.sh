#!/usr/bin/env bash
# Everything a session lent a GPU should run, in one command (see DEVELOPERS.md "The GPU"):
# build with the CUDA kernels, run the test suite on CUDA, compute-sanitizer on a small workload,
# and the benchmarks. Logs and JSON go to $OUT (default: ./gpu-check).
#     bash benchmarks/gpu_check.sh
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/gpu-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"

{ nvidia-smi; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; nvcc --version; } > "$OUT/environment.txt" 2>&1
cd "$REPO"
MEMC_OPS_CUDA=1 python3 -m pip install --no-deps --no-build-isolation . > "$OUT/build.log" 2>&1 \
  || { echo "build failed"; tail -40 "$OUT/build.log"; exit 1; }
# Run from outside the checkout so that the installed package, not the source folder, is imported.
cd /tmp
python3 -m pytest "$REPO/tests" -q -rs -p no:cacheprovider > "$OUT/tests.log" 2>&1; echo "tests: exit $?"; tail -5 "$OUT/tests.log"
compute-sanitizer --tool memcheck --error-exitcode 1 python3 "$REPO/benchmarks/cuda_workload.py" > "$OUT/sanitizer.log" 2>&1
echo "compute-sanitizer memcheck: exit $?"; tail -5 "$OUT/sanitizer.log"
compute-sanitizer --tool initcheck --error-exitcode 1 python3 "$REPO/benchmarks/cuda_workload.py" > "$OUT/initcheck.log" 2>&1
echo "compute-sanitizer initcheck: exit $?"; tail -5 "$OUT/initcheck.log"
python3 "$REPO/benchmarks/bench_warp.py" --device cuda --dtype float32 --dtype float16 --json "$OUT/bench_warp.json" > "$OUT/bench_warp.txt" 2>&1
echo "bench_warp: exit $?"; cat "$OUT/bench_warp.txt"
if [ -f "$REPO/benchmarks/bench_projection.py" ]; then
  python3 "$REPO/benchmarks/bench_projection.py" --device cuda --json "$OUT/bench_projection.json" > "$OUT/bench_projection.txt" 2>&1
  echo "bench_projection: exit $?"; cat "$OUT/bench_projection.txt"
fi
# Whole frames: the training-free path (DIS on the CPU) and the networks, float32 and float16 autocast.
python3 "$REPO/benchmarks/bench_interpolate.py" --device cuda --dtype float32 --dtype float16 --repeats 3 \
  --json "$OUT/bench_interpolate.json" > "$OUT/bench_interpolate.txt" 2>&1
echo "bench_interpolate: exit $?"; cat "$OUT/bench_interpolate.txt"

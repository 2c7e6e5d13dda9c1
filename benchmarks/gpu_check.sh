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
# memc-train on CUDA: two steps of MEMC-Net_s on full-size generated Vimeo90K triplets, in float32
# and with --amp (bfloat16 autocast on GPUs that have it, else float16 with a gradient scaler),
# then the same under torchrun (NCCL, one process per GPU); and the training benchmark.
python3 - "$OUT/vimeo_triplet" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(0)
names = [f"00001/{k:04d}" for k in range(1, 5)]
for name in names:
    picture = rng.integers(0, 256, size=(264, 456, 3), dtype=np.uint8)
    os.makedirs(os.path.join(root, "sequences", name), exist_ok=True)
    for k in range(3):
        Image.fromarray(picture[4 - k + 1 : 260 - k + 1, 4 - 2 * k + 2 : 452 - 2 * k + 2]).save(
            os.path.join(root, "sequences", name, f"im{k + 1}.png"))
with open(os.path.join(root, "tri_trainlist.txt"), "w") as handle:
    handle.write("\n".join(names[:3]) + "\n")
with open(os.path.join(root, "tri_testlist.txt"), "w") as handle:
    handle.write(names[3] + "\n")
PY
for amp in "" "--amp"; do
  python3 -m memc_models.cli.train "$OUT/vimeo_triplet" --model memc_s --device cuda --epochs 1 --max-steps 2 \
    --workers 2 $amp --out "$OUT/train${amp:+_amp}" > "$OUT/train${amp:+_amp}.log" 2>&1
  echo "memc-train cuda ${amp:-float32}: exit $?"; tr "\r" "\n" < "$OUT/train${amp:+_amp}.log" | grep -v "it/s\]\|step/s" | tail -4
done
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
python3 -m torch.distributed.run --nproc_per_node="$GPUS" -m memc_models.cli.train "$OUT/vimeo_triplet" --model memc_s \
  --device cuda --epochs 1 --max-steps 2 --workers 2 --amp --out "$OUT/train_torchrun" > "$OUT/train_torchrun.log" 2>&1
echo "torchrun memc-train ($GPUS processes): exit $?"; tr "\r" "\n" < "$OUT/train_torchrun.log" | grep -v "it/s\]\|step/s" | tail -4
python3 "$REPO/benchmarks/bench_train.py" --device cuda --dtype float32 --dtype bfloat16 --repeats 5 \
  --json "$OUT/bench_train.json" > "$OUT/bench_train.txt" 2>&1
echo "bench_train: exit $?"; cat "$OUT/bench_train.txt"

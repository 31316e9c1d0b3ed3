#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command (README "Speed"; issues 3 and 4): the `gpu` tests (CUDA
# graphs equal to eager, no host syncs), the SAC, pixel SAC and IQL update benchmarks on CPU and CUDA (eager, compiled,
# compiled + CUDA graphs), a short compiled + CUDA-graph SAC run on the GPU and its evaluation with EGL videos.
#   bash scripts/gpu_check.sh                     # results under gpu_check/
#   STEPS=20000 OUT=/tmp/gpu bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
$PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: torch sees no CUDA device')"
export MUJOCO_GL=${MUJOCO_GL:-egl}
STEPS=${STEPS:-10000}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

$PY -m pytest -q -m gpu tests 2>&1 | tee "$OUT/pytest_gpu.txt"
$PY scripts/benchmark.py --only sac --updates 1000 --repeats 3 --out "$OUT/bench_sac.json"
$PY scripts/benchmark.py --only iql --updates 1000 --repeats 3 --out "$OUT/bench_iql.json"
$PY scripts/benchmark.py --only sac_pixels --pixel-updates 100 --repeats 3 --out "$OUT/bench_sac_pixels.json"

RUN=runs/gpu_check/metaworld/reach-v3/seed1
$PY scripts/train.py experiment=sac_metaworld name=gpu_check env.task=metaworld/reach-v3 seed=1 device=cuda \
    agent.compile=true agent.cudagraphs=true trainer.total_steps="$STEPS" trainer.eval_every="$STEPS" \
    trainer.checkpoint_every="$STEPS" trainer.eval_videos=1 overwrite=true
$PY scripts/evaluate.py "$RUN" --episodes 2 --device cuda --out "$OUT/evaluate"
ls "$OUT/evaluate"
echo "gpu_check: all steps ran; results in $OUT/"

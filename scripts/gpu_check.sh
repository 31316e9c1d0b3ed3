#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command (README "Speed"; issues 3 and 4): the `gpu` tests (CUDA
# graphs equal to eager, no host syncs), the SAC, pixel SAC and IQL update benchmarks on CPU and CUDA (eager, compiled,
# compiled + CUDA graphs), a short compiled + CUDA-graph SAC run on the GPU and its evaluation with EGL videos.
# Each step logs to $OUT/<step>.txt; a failing step does not stop the rest (exit 1 at the end, naming them).
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

# Every step runs even if an earlier one fails (a GPU session is short): failures are listed at the end.
failed=()
step() {  # step NAME COMMAND...: run it, log to $OUT/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$OUT/$name.txt"; then
        failed+=("$name")
    fi
}

step pytest_gpu $PY -m pytest -q -m gpu tests
step bench_sac $PY scripts/benchmark.py --only sac --updates 1000 --repeats 3 --out "$OUT/bench_sac.json"
step bench_iql $PY scripts/benchmark.py --only iql --updates 1000 --repeats 3 --out "$OUT/bench_iql.json"
step bench_sac_pixels $PY scripts/benchmark.py --only sac_pixels --pixel-updates 100 --repeats 3 \
    --out "$OUT/bench_sac_pixels.json"

RUN=runs/gpu_check/metaworld/reach-v3/seed1
step train_cudagraphs $PY scripts/train.py experiment=sac_metaworld name=gpu_check env.task=metaworld/reach-v3 seed=1 \
    device=cuda agent.compile=true agent.cudagraphs=true trainer.total_steps="$STEPS" trainer.eval_every="$STEPS" \
    trainer.checkpoint_every="$STEPS" trainer.eval_videos=1 overwrite=true
step evaluate_egl $PY scripts/evaluate.py "$RUN" --episodes 2 --device cuda --out "$OUT/evaluate"
ls "$OUT" "$OUT/evaluate" || true
if ((${#failed[@]})); then
    echo "gpu_check: FAILED: ${failed[*]} (logs in $OUT/)"
    exit 1
fi
echo "gpu_check: all steps passed; results in $OUT/"

#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command (README "Speed"; issues 3, 4, 6, 7, 8 and 9): the `gpu` tests (CUDA
# graphs equal to eager, no host syncs), the SAC, pixel SAC and IQL update benchmarks on CPU and CUDA (eager, compiled,
# compiled + CUDA graphs), the RePo update benchmark (eager, bf16, compiled; host syncs), a short compiled + CUDA-graph
# SAC run on the GPU and its evaluation with EGL videos.
# Each step logs to $OUT/<step>.txt; a failing step does not stop the rest (exit 1 at the end, naming them).
#   bash scripts/gpu_check.sh                     # results under gpu_check/
#   STEPS=20000 OUT=/tmp/gpu bash scripts/gpu_check.sh
#   ONLY="pytest_gpu bench_sac" bash scripts/gpu_check.sh    # some steps (names below), e.g. to fit a time limit
#   BENCH_DEVICES=cpu,cuda bash scripts/gpu_check.sh          # benchmarks on the CPU too (default: cuda only)
# On a machine without internet: `bash scripts/device_wheels.sh` first, where the registry is reachable, then
# carry .whl and .gl (the device tool: carry=[".whl", ".gl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] && [ -d .whl ]; then
    # A GPU machine without internet (the `device` machines): its python3 has CUDA torch; the packages it lacks
    # come as wheels from scripts/device_wheels.sh, the GL loaders for EGL as .deb files in .gl/.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
    for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig 2>/dev/null || true
    [ -e embodied_rl/envs ] || ln -s ../envs embodied_rl/envs # what the editable install maps (pyproject package-dir)
    export PYTHONPATH=$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}
    PY=python3
else
    bash scripts/setup.sh
    PY=.venv/bin/python
fi
$PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: torch sees no CUDA device')"
export MUJOCO_GL=${MUJOCO_GL:-egl}
# NVIDIA's EGL driver where glvnd does not find it by itself (the device machines' layout)
nvidia_egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$nvidia_egl" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nvidia_egl
fi
STEPS=${STEPS:-10000}
BENCH_DEVICES=${BENCH_DEVICES:-cuda}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

# Every step runs even if an earlier one fails (a GPU session is short): failures are listed at the end.
STEP_NAMES="pytest_gpu bench_sac bench_iql bench_sac_pixels bench_repo egl_render train_cudagraphs evaluate_egl gw_entropic_cuda train_pearl image_reward_cuda train_vlm_iql train_repo adapt_repo train_text2reward"
for name in ${ONLY:-}; do
    [[ " $STEP_NAMES " == *" $name "* ]] || { echo "error: ONLY names an unknown step '$name' (steps: $STEP_NAMES)"; exit 2; }
done
failed=()
step() {  # step NAME COMMAND...: run it, log to $OUT/NAME.txt, remember a failure; ONLY="a b" runs just those
    local name=$1
    shift
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        return 0
    fi
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$OUT/$name.txt"; then
        failed+=("$name")
    fi
}

step pytest_gpu $PY -m pytest -q -m gpu tests
step bench_sac $PY scripts/benchmark.py --only sac --updates 1000 --repeats 3 --devices "$BENCH_DEVICES" --out "$OUT/bench_sac.json"
step bench_iql $PY scripts/benchmark.py --only iql --updates 1000 --repeats 3 --devices "$BENCH_DEVICES" --out "$OUT/bench_iql.json"
step bench_sac_pixels $PY scripts/benchmark.py --only sac_pixels --pixel-updates 100 --repeats 3 --devices "$BENCH_DEVICES" \
    --out "$OUT/bench_sac_pixels.json"
# issue 23: RePo.update at the paper's sizes, 50x50 windows sampled on the GPU, eager / bf16 / compiled, repo and
# dreamer objectives, host syncs counted (`host_syncs`, target 0), and the RePo env's steps/s with the agent acting on
# the GPU. Compiling the unrolled RSSM and imagination takes minutes: `timeout` bounds the step (20 min)
step bench_repo timeout 1200 $PY scripts/benchmark.py --only repo --repeats 5 --repo-updates 2 --devices "$BENCH_DEVICES" \
    --out "$OUT/bench_repo.json"

# MuJoCo through EGL, independent of video encoding
step egl_render $PY -c "from embodied_rl.envs import make_env
obs, _ = make_env(task='metaworld/reach-v3', obs_mode='pixels', image_size=64).reset(seed=0)
assert obs.std() > 0, 'blank frame'
print('EGL frame', obs.shape, 'mean', obs.mean())"
# mp4s need imageio-ffmpeg or, on a machine set up from device_wheels.sh, OpenCV (embodied_rl/logging/video.py)
if $PY -c "import imageio_ffmpeg" 2>/dev/null || $PY -c "import cv2" 2>/dev/null; then
    VIDEOS=1
else
    VIDEOS=0
    echo "note: neither imageio-ffmpeg nor OpenCV: no mp4s"
fi

RUN=runs/gpu_check/metaworld/reach-v3/seed1
step train_cudagraphs $PY scripts/train.py experiment=sac_metaworld name=gpu_check env.task=metaworld/reach-v3 seed=1 \
    device=cuda agent.compile=true agent.cudagraphs=true trainer.total_steps="$STEPS" trainer.eval_every="$STEPS" \
    trainer.checkpoint_every="$STEPS" trainer.eval_videos="$VIDEOS" overwrite=true
step evaluate_egl $PY scripts/evaluate.py "$RUN" --episodes 2 --videos "$VIDEOS" --device cuda --out "$OUT/evaluate"
# PEARL (issue 6): entropic Gromov-Wasserstein on POT's torch backend on the GPU, equal to the CPU's within tolerance;
# then a short PEARL run with the reward model and IQL on CUDA
step gw_entropic_cuda $PY -c "import numpy as np, torch
from embodied_rl.labelling.transfer import gw_coupling
rng = np.random.default_rng(0)
a, b = rng.random((300, 300)), rng.random((300, 300))
a, b = (a + a.T) / 2, (b + b.T) / 2
cpu = gw_coupling(a, b, method='entropic')
gpu = gw_coupling(torch.tensor(a, device='cuda'), torch.tensor(b, device='cuda'), method='entropic')
assert gpu.is_cuda, 'the coupling left the GPU'
gap = float(np.abs(gpu.cpu().numpy() - cpu).max())
print('max |T_gpu - T_cpu|', gap, 'max T', float(cpu.max()), 'mass', float(gpu.sum()))
assert gap <= 1e-4 * cpu.max(), 'GPU and CPU couplings differ'"
step train_pearl $PY scripts/train.py experiment=pearl device=cuda run_dir=runs/gpu_check_pearl overwrite=true \
    pearl.source_pairs=300 pearl.target_pairs=300 pearl.reward.steps=500 trainer.total_updates=2000 \
    trainer.eval_every=2000 trainer.checkpoint_every=2000 trainer.eval_videos=0
# issue 7: the image reward model trains on CUDA (its update rate at 64 px, to compare with docs/reward_models.md's
# CPU figure), then the VLM-labelled pipeline's scripted arm end to end on the GPU with EGL-rendered frames
step image_reward_cuda $PY -c "import time, numpy as np, torch
from embodied_rl.rewards import ImageRewardConfig, train_image_reward_model
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, size=(2, 512, 64, 64, 3), dtype=np.uint8)
labels = (frames[0].mean(axis=(1, 2, 3)) > frames[1].mean(axis=(1, 2, 3))).astype(np.float32)
cfg = ImageRewardConfig(steps=200, eval_every=200, device='cuda')
start = time.perf_counter()
model, report = train_image_reward_model(frames[0], frames[1], labels, cfg)
seconds = time.perf_counter() - start
assert next(model.parameters()).is_cuda, 'the model is not on the GPU'
print(f'image reward model: {200 / seconds:.1f} updates/s at 64 px, batch 64, 3 members; val accuracy', report.best_val_accuracy)"
step train_vlm_iql $PY scripts/train.py experiment=vlm_iql vlm_iql.arm=scripted device=cuda run_dir=runs/gpu_check_vlm_iql \
    overwrite=true trainer.dataset=medium vlm_iql.dataset_episodes=10 vlm_iql.labelling.num_pairs=500 \
    vlm_iql.reward.steps=500 trainer.total_updates=2000 trainer.eval_every=2000 trainer.checkpoint_every=2000 \
    trainer.eval_videos=0
# issue 9: RePo at the paper's batch (50 x 50 windows) and update rate on the GPU with EGL-rendered DMC pixels and
# distractors, replay on the GPU, its test-split evaluation; then the test-time adaptation of that run on the GPU.
# A short budget: the point is that the paper's configuration runs on CUDA and how fast (steps/s in metrics.csv)
step train_repo $PY scripts/train.py experiment=repo env.task=dmc/walker-walk device=cuda run_dir=runs/gpu_check_repo \
    overwrite=true trainer.total_steps=6000 trainer.seed_steps=2500 trainer.eval_every=6000 trainer.eval_episodes=2 \
    trainer.checkpoint_every=6000 repo.test_episodes=2
step adapt_repo $PY scripts/train.py experiment=repo_adapt checkpoint=runs/gpu_check_repo device=cuda \
    run_dir=runs/gpu_check_repo_adapt overwrite=true repo_adapt.env_steps=2000 repo_adapt.eval_episodes=2
# issue 8: Text2Reward's SAC on a sandboxed program (the stand-in's hand-written code) with the learner on CUDA
step train_text2reward bash -c "TASKS=reach-v3 SEEDS=1 STEPS=20000 ARMS=generated EXTRA='device=cuda name=gpu_check_t2r' \
    bash scripts/text2reward_results.sh"
ls "$OUT" "$OUT/evaluate" || true
if ((${#failed[@]})); then
    echo "gpu_check: FAILED: ${failed[*]} (logs in $OUT/)"
    exit 1
fi
echo "gpu_check: all steps passed; results in $OUT/"

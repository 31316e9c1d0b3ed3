#!/usr/bin/env bash
# Locomotion offline results of README "Results": the D4RL recipe on our own SAC run, then IQL, 3 seeds.
#   STEPS=400000 EVERY=8333 UPDATES=15000 EPISODES=100 JOBS=1 TASK=Walker2d-v5 bash scripts/locomotion_results.sh
#                                       # what the README reports for Hopper and Walker2d (STEPS=100000 and no
#                                       # EVERY for HalfCheetah; 2-core CPU, one task per core, run side by side)
#   STEPS=1000000 UPDATES=1000000 TASK=Walker2d-v5 DEVICE=cuda bash scripts/locomotion_results.sh   # D4RL scale
#   TIERS=expert TASK=Hopper-v5 bash scripts/locomotion_results.sh   # IQL on other tiers (default medium,medium-replay);
#                                       # the table lists every tier's IQL runs found under runs/
# A finished SAC run is not retrained; to lengthen it, resume it with a larger budget and buffer, e.g.
#   python scripts/train.py <the step-1 command below with the new STEPS> resume=true
# and rebuild the datasets with OVERWRITE=1 (move the old IQL runs away first: the IQL sweep resumes, so it
# would skip them as finished although their data changed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TASK=${TASK:-Hopper-v5}
STEPS=${STEPS:-100000}
EVERY=${EVERY:-$((STEPS / 12))}       # SAC's evaluation and checkpoint cadence (the recipe picks among its checkpoints)
EPISODES=${EPISODES:-100}             # episodes per rollout tier (medium-replay is the replay buffer)
OVERWRITE=${OVERWRITE:-0}             # 1: rebuild datasets that already exist
EXPERT_STEP=${EXPERT_STEP:-}          # expert checkpoint step (default: the run's final one)
UPDATES=${UPDATES:-15000}
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-auto}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=.venv/bin/python
RUN=runs/sac_recipe/mujoco/$TASK/seed1

# 1. SAC, keeping every checkpoint with its replay buffer (the recipe reads them)
if [[ ! -f $RUN/results.json ]]; then
    $PY scripts/train.py experiment=sac_mujoco name=sac_recipe env.task="mujoco/$TASK" device="$DEVICE" \
        trainer.total_steps="$STEPS" trainer.seed_steps=5000 trainer.replay_size="$STEPS" \
        trainer.eval_every="$EVERY" trainer.checkpoint_every="$EVERY" trainer.keep_checkpoints=0 \
        trainer.eval_episodes=5 trainer.eval_videos=0 trainer.progress=false overwrite=true
fi
# 2. random / medium / medium-replay / expert datasets from it
# (checkpoints scored by 10 deterministic episodes each: the trainer's 5-episode evaluations let one lucky
# early checkpoint pass for medium on Walker2d)
$PY scripts/make_datasets.py mujoco --task "$TASK" --run "$RUN" --episodes "$EPISODES" --no-progress \
    --select evaluate --eval-episodes 10 \
    $([[ $OVERWRITE == 1 ]] && echo --overwrite) $([[ -n $EXPERT_STEP ]] && echo --expert-step "$EXPERT_STEP")
# 3. IQL on each tier, 3 seeds (CORL's reward scaling for locomotion)
$PY scripts/train.py -m experiment=iql env=mujoco env.task="mujoco/$TASK" device="$DEVICE" \
    trainer.dataset=${TIERS:-medium,medium-replay} trainer.reward.normalize=returns \
    trainer.total_updates="$UPDATES" trainer.eval_every=$((UPDATES / 5)) trainer.eval_episodes=10 \
    trainer.eval_videos=0 trainer.checkpoint_every="$UPDATES" trainer.progress=false seed=1,2,3 \
    hydra/launcher=local hydra.launcher.n_jobs="$JOBS" resume=true  # reruns skip finished runs
mkdir -p docs/results
{
  echo "## SAC run used for the datasets"; $PY scripts/summarize.py "$RUN" --metric return_mean
  echo; echo "## IQL"
  # this task's runs only (each task's file repeated every task's rows before; offline_mujoco.md has them all)
  tiers=(); for tier in random medium medium-replay expert; do [[ -d runs/iql_$tier/mujoco/$TASK ]] && tiers+=("runs/iql_$tier/mujoco/$TASK"); done
  $PY scripts/summarize.py "${tiers[@]}" --metric return_mean --metric normalized_score
} | tee "docs/results/offline_${TASK}.md"

#!/usr/bin/env bash
# Learning check of README "Results": SAC from states on Meta-World reach-v3 and drawer-open-v3, 3 seeds
# each, as one local Hydra sweep (joblib launcher), then curves and a table.
#   STEPS=40000 JOBS=2 bash scripts/learning_check.sh          # README, then drawer-open resumed to 200k (see there)
#   STEPS=200000 JOBS=6 DEVICE=cuda bash scripts/learning_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
STEPS=${STEPS:-30000}
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-auto}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per run: parallel runs must not oversubscribe cores
.venv/bin/python scripts/train.py -m experiment=sac_metaworld name=sac_check device="$DEVICE" \
    env.task=metaworld/reach-v3,metaworld/drawer-open-v3 seed=1,2,3 \
    trainer.total_steps="$STEPS" trainer.eval_every=$((STEPS / 10)) trainer.checkpoint_every=$((STEPS / 10)) \
    trainer.eval_videos=0 trainer.progress=false hydra/launcher=local hydra.launcher.n_jobs="$JOBS" \
    resume=true  # a rerun skips finished runs, continues killed ones, extends all with a larger STEPS
mkdir -p docs/results
.venv/bin/python scripts/plot.py runs/sac_check/metaworld/reach-v3 runs/sac_check/metaworld/drawer-open-v3 \
    --out docs/results/sac_metaworld.png --title "SAC, Meta-World v3 from states, 3 seeds"
.venv/bin/python scripts/summarize.py runs/sac_check | tee docs/results/sac_metaworld.md

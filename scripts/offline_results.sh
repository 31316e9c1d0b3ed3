#!/usr/bin/env bash
# Offline results of README "Results": IQL on Meta-World tiers and the SS-ORL arms + window ablation (via
# scripts/ssorl_results.sh), 3 seeds,
# as local Hydra sweeps (joblib launcher), then tables. Build the datasets first:
#   python scripts/make_datasets.py metaworld --episodes 50      # the six default tasks
#   UPDATES=15000 JOBS=2 bash scripts/offline_results.sh        # what the README reports (2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
UPDATES=${UPDATES:-15000}
IDM_STEPS=${IDM_STEPS:-5000}
JOBS=${JOBS:-2}
TASKS=${TASKS:-metaworld/drawer-open-v3,metaworld/button-press-v3}   # SS-ORL
IQL_TASKS=${IQL_TASKS:-$TASKS,metaworld/door-open-v3,metaworld/window-open-v3,metaworld/sweep-into-v3,metaworld/plate-slide-v3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=.venv/bin/python
COMMON=(trainer.total_updates="$UPDATES" trainer.eval_every=$((UPDATES / 5)) trainer.eval_episodes=10
        trainer.eval_videos=0 trainer.checkpoint_every="$UPDATES" trainer.progress=false seed=1,2,3
        hydra/launcher=local hydra.launcher.n_jobs="$JOBS" resume=true)  # reruns skip finished runs

# IQL on two quality tiers
$PY scripts/train.py -m experiment=iql env.task="$IQL_TASKS" trainer.dataset=medium,mixed "${COMMON[@]}"
# SS-ORL: three arms on the mixed tier (10 % labelled, from the lower half of returns) + window ablation
ENV=metaworld TASKS="$TASKS" DATASET=mixed REWARD=none UPDATES="$UPDATES" IDM_STEPS="$IDM_STEPS" JOBS="$JOBS" \
    CONFIG=ours SEEDS=1,2,3 ARMS=labelled_only,semi_supervised,oracle,control_random \
    ABLATION_TASK=metaworld/drawer-open-v3 bash scripts/ssorl_results.sh

mkdir -p docs/results
{
  echo "## IQL"; $PY scripts/summarize.py runs/iql_medium/metaworld runs/iql_mixed/metaworld --metric success_rate --metric normalized_score
} | tee docs/results/offline_metaworld.md

#!/usr/bin/env bash
# SS-ORL results of README "Results": the three arms (labelled-only, semi-supervised, oracle) on each task, 3 seeds,
# then the IDM window-size ablation (k = 0, 2; k = 1 is the semi-supervised arm) on the first task, then the same
# semi-supervised runs with the paper's IDM input encoding (ssorl.idm.inputs=states, run names ending in _states),
# then a table.
#   bash scripts/ssorl_results.sh                 # Hopper medium-replay from scripts/locomotion_results.sh (default)
#   ENV=metaworld TASKS=metaworld/drawer-open-v3,metaworld/button-press-v3 DATASET=mixed REWARD=none \
#       bash scripts/ssorl_results.sh             # the Meta-World mixed tier (scripts/offline_results.sh does this)
#   ABLATION=0 bash scripts/ssorl_results.sh      # the three arms only (no window or encoding ablation)
#   TABLES_ONLY=1 bash scripts/ssorl_results.sh   # only rewrite the table from existing runs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ENV=${ENV:-mujoco}
TASKS=${TASKS:-mujoco/Hopper-v5}
DATASET=${DATASET:-medium-replay}
REWARD=${REWARD:-returns}               # CORL's reward scaling for locomotion; none for Meta-World
UPDATES=${UPDATES:-15000}
IDM_STEPS=${IDM_STEPS:-5000}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-1,2,3}
ABLATION=${ABLATION:-1}                 # 0 skips the window-size and input-encoding ablations
TABLES_ONLY=${TABLES_ONLY:-0}           # 1: no training, only the table from the runs already there
EVAL_EPISODES=${EVAL_EPISODES:-10}
ABLATION_TASK=${ABLATION_TASK:-${TASKS%%,*}}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=.venv/bin/python
COMMON=(experiment=ssorl env="$ENV" trainer.dataset="$DATASET" trainer.reward.normalize="$REWARD"
        ssorl.idm.steps="$IDM_STEPS" ssorl.idm.progress=false
        trainer.total_updates="$UPDATES" trainer.eval_every=$((UPDATES / 5)) trainer.eval_episodes="$EVAL_EPISODES"
        trainer.eval_videos=0 trainer.checkpoint_every="$UPDATES" trainer.progress=false seed="$SEEDS"
        hydra/launcher=local hydra.launcher.n_jobs="$JOBS" resume=true)  # reruns skip finished runs

if [[ "$TABLES_ONLY" == 0 ]]; then
  $PY scripts/train.py -m env.task="$TASKS" ssorl.arm=labelled_only,semi_supervised,oracle "${COMMON[@]}"
fi
if [[ "$TABLES_ONLY" == 0 && "$ABLATION" != 0 ]]; then
  $PY scripts/train.py -m env.task="$ABLATION_TASK" ssorl.arm=semi_supervised ssorl.window=0,2 "${COMMON[@]}"
  STATES=(ssorl.arm=semi_supervised ssorl.idm.inputs=states
          'name=ssorl_${agent.name}_${trainer.dataset}_${ssorl.arm}_k${ssorl.window}_states')
  $PY scripts/train.py -m env.task="$TASKS" "${STATES[@]}" "${COMMON[@]}"
  $PY scripts/train.py -m env.task="$ABLATION_TASK" ssorl.window=0,2 "${STATES[@]}" "${COMMON[@]}"
fi

mkdir -p docs/results
{
  echo "## SS-ORL on $DATASET ($TASKS)"
  $PY scripts/summarize.py runs/ssorl_iql_"$DATASET"_* --metric success_rate --metric return_mean --metric normalized_score
  echo; echo "## proxy actions of the inverse dynamics model on the unlabelled part: MSE, explained variance"
  for run in runs/ssorl_iql_"$DATASET"_semi_supervised_k*/*/*/seed*; do
    if [[ ! -f $run/ssorl.json ]]; then echo "$run (no ssorl.json: killed before the IDM finished?)"; continue; fi
    error=$($PY -c "import json,sys; d = json.load(open(sys.argv[1]))
print(round(d['proxy_action_mse'], 4), round(d['proxy_action_explained_variance'], 3))" "$run/ssorl.json")
    echo "$run $error"
  done
} | tee "docs/results/ssorl_${ENV}_${DATASET}.md"

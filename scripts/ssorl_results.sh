#!/usr/bin/env bash
# SS-ORL results (issue 24): every arm (labelled-only, semi-supervised, oracle, and the two control arms whose
# action-free steps get uninformative actions) on each task and seed, for one configuration:
#   CONFIG=paper  experiment=ssorl_paper: the reference code's IDM and TD3+BC at its budget (configs/ssorl/paper.yaml)
#   CONFIG=ours   experiment=ssorl: our IDM (`differences`, symmetric window) and IQL, our ablation of the method
# then (ours, ABLATION=1) the IDM window-size ablation (k = 0, 2) and the paper's input encoding on our IDM, then
# the table of every arm, the semi-supervised arm's gap to each other arm with its 95 % CI (GAP_METRIC: normalised
# score, success on Meta-World), a table with the IDM's validation curve and the proxy / stand-in actions' error per
# run, and the arms' evaluation curves (docs/results/ssorl_<CONFIG>_<ENV>_<DATASET>.md and .png).
#   CONFIG=paper bash scripts/ssorl_results.sh                 # Hopper medium-replay, 5 arms x 5 seeds, 200k updates
#   CONFIG=ours  bash scripts/ssorl_results.sh                 # the same arms with our configuration
#   CONFIG=paper TASKS=mujoco/Hopper-v5,mujoco/Walker2d-v5,mujoco/HalfCheetah-v5 DATASET=medium-expert \
#       bash scripts/ssorl_results.sh                          # more tasks / another tier (build the datasets first)
#   CONFIG=paper ARMS=semi_supervised,control_random SEEDS=1 UPDATES=2000 IDM_STEPS=20 EVAL_EPISODES=2 \
#       bash scripts/ssorl_results.sh                          # a smoke run (name it: RUN_PREFIX=smoke)
#   ENV=metaworld TASKS=metaworld/drawer-open-v3 DATASET=mixed REWARD=none CONFIG=ours bash scripts/ssorl_results.sh
#   TABLES_ONLY=1 CONFIG=paper bash scripts/ssorl_results.sh   # only rewrite the table from existing runs
# UPDATES, IDM_STEPS, EVAL_EPISODES, REWARD left empty keep the experiment's values (paper: 200k TD3+BC updates of
# 5120, 100 IDM updates, 30 evaluation episodes every 10k updates, raw rewards; ours: 200k IQL updates of 256,
# 20k IDM updates, 10 episodes every 10k, CORL's reward scaling). Run directories:
# runs/<RUN_PREFIX>_<agent>_<dataset>_<arm>_k<window>[_states]/<task>/seed<N>, RUN_PREFIX=ssorl_<CONFIG> by default
# (the runs of the earlier protocol, runs/ssorl_iql_*, stay as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CONFIG=${CONFIG:-ours}
ENV=${ENV:-mujoco}
TASKS=${TASKS:-mujoco/Hopper-v5}
DATASET=${DATASET:-medium-replay}
ARMS=${ARMS:-labelled_only,semi_supervised,oracle,control_random,control_shuffled}
SEEDS=${SEEDS:-1,2,3,4,5}
UPDATES=${UPDATES:-}
IDM_STEPS=${IDM_STEPS:-}
EVAL_EPISODES=${EVAL_EPISODES:-}
REWARD=${REWARD:-}
JOBS=${JOBS:-2}
ABLATION=${ABLATION:-$([[ $CONFIG == ours ]] && echo 1 || echo 0)}  # ours only: window size and encoding
ABLATION_TASK=${ABLATION_TASK:-${TASKS%%,*}}
TABLES_ONLY=${TABLES_ONLY:-0}           # 1: no training, only the table from the runs already there
GAP_METRIC=${GAP_METRIC:-$([[ $ENV == metaworld ]] && echo success_rate || echo normalized_score)}  # of the gap table
RUN_PREFIX=${RUN_PREFIX:-ssorl_$CONFIG}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=.venv/bin/python
case $CONFIG in
  paper) EXPERIMENT=ssorl_paper ;;
  ours) EXPERIMENT=ssorl ;;
  *) echo "CONFIG must be paper or ours, got $CONFIG" >&2; exit 2 ;;
esac
NAME='${agent.name}_${trainer.dataset}_${ssorl.arm}_k${ssorl.window}'
COMMON=(experiment="$EXPERIMENT" env="$ENV" trainer.dataset="$DATASET" ssorl.idm.progress=false
        trainer.eval_videos=0 trainer.progress=false seed="$SEEDS"
        hydra/launcher=local hydra.launcher.n_jobs="$JOBS" resume=true)  # reruns skip finished runs
[[ -n $REWARD ]] && COMMON+=(trainer.reward.normalize="$REWARD")
[[ -n $IDM_STEPS ]] && COMMON+=(ssorl.idm.steps="$IDM_STEPS")
[[ -n $EVAL_EPISODES ]] && COMMON+=(trainer.eval_episodes="$EVAL_EPISODES")
if [[ -n $UPDATES ]]; then
  COMMON+=(trainer.total_updates="$UPDATES" trainer.eval_every=$((UPDATES / 20 > 0 ? UPDATES / 20 : 1))
           trainer.checkpoint_every="$UPDATES")
fi

if [[ "$TABLES_ONLY" == 0 ]]; then
  $PY scripts/train.py -m env.task="$TASKS" ssorl.arm="$ARMS" "name=${RUN_PREFIX}_$NAME" "${COMMON[@]}"
fi
if [[ "$TABLES_ONLY" == 0 && "$ABLATION" != 0 ]]; then
  $PY scripts/train.py -m env.task="$ABLATION_TASK" ssorl.arm=semi_supervised ssorl.window=0,2 \
      "name=${RUN_PREFIX}_$NAME" "${COMMON[@]}"
  STATES=(ssorl.arm=semi_supervised ssorl.idm.inputs=states "name=${RUN_PREFIX}_${NAME}_states")
  $PY scripts/train.py -m env.task="$TASKS" "${STATES[@]}" "${COMMON[@]}"
  $PY scripts/train.py -m env.task="$ABLATION_TASK" ssorl.window=0,2 "${STATES[@]}" "${COMMON[@]}"
fi

mkdir -p docs/results
OUT="docs/results/ssorl_${CONFIG}_${ENV}_${DATASET}.md"
{
  echo "## SS-ORL, $CONFIG configuration (experiment=$EXPERIMENT), $DATASET ($TASKS)"
  echo
  echo "Made by: \`CONFIG=$CONFIG ENV=$ENV TASKS=$TASKS DATASET=$DATASET ARMS=$ARMS SEEDS=$SEEDS" \
       "UPDATES=$UPDATES IDM_STEPS=$IDM_STEPS EVAL_EPISODES=$EVAL_EPISODES REWARD=$REWARD bash scripts/ssorl_results.sh\`" \
       "($(date -u +%Y-%m-%d))"
  echo
  # GAP_METRIC first: the gap tables (semi-supervised against each other arm) are of the first metric
  METRICS=(--metric "$GAP_METRIC")
  for m in success_rate return_mean normalized_score; do [[ $m == "$GAP_METRIC" ]] || METRICS+=(--metric "$m"); done
  GAPS=()
  if [[ ,$ARMS, == *,semi_supervised,* ]]; then
    for arm in ${ARMS//,/ }; do [[ $arm == semi_supervised ]] || GAPS+=(--gap "_semi_supervised_:_${arm}_"); done
    echo "Below the arms' table: the semi-supervised arm against each other arm, final $GAP_METRIC, the difference of"
    echo "the means over seeds and its 95 % CI (Welch's t interval; one row per task and window both arms have)."
    echo
  fi
  $PY scripts/summarize.py runs/"$RUN_PREFIX"_*_"$DATASET"_* "${METRICS[@]}" "${GAPS[@]}"
  echo; echo "## IDM validation curve and proxy / stand-in actions on the action-free part"
  echo "val nll: first -> best (step) -> last evaluation, on the held-out labelled trajectories; MSE and explained"
  echo "variance of the actions the arm trained on against the hidden true ones (controls: about 0 or below)."
  echo
  echo "| run | held-out trajectories | val nll first -> best (step) -> last | proxy MSE | explained var. |"
  echo "|---|---|---|---|---|"
  for run in runs/"$RUN_PREFIX"_*_"$DATASET"_{semi_supervised,control_random,control_shuffled}_k*/*/*/seed*; do
    [[ -d $run ]] || continue
    if [[ ! -f $run/ssorl.json ]]; then echo "| $run | (no ssorl.json: killed before the data was ready?) | | | |"; continue; fi
    $PY -c "import json, sys
d = json.load(open(sys.argv[1])); idm = d.get('idm')
curve = '-'
if idm and idm['val_nll']:
    curve = f\"{idm['val_nll'][0]:.3f} -> {idm['best_val_nll']:.3f} ({idm['best_step']} of {idm['eval_steps'][-1]}) -> {idm['val_nll'][-1]:.3f}\"
held = len(idm['val_episode_ids']) if idm else '-'
print(f\"| {sys.argv[2]} | {held} | {curve} | {d['proxy_action_mse']:.4f} | {d['proxy_action_explained_variance']:.3f} |\")" \
      "$run/ssorl.json" "$run"
  done
} | tee "$OUT"
# the evaluation curves of every arm (is each flat at its end?), beside the table
$PY scripts/plot.py runs/"$RUN_PREFIX"_*_"$DATASET"_* --metric "eval/$GAP_METRIC" --out "${OUT%.md}.png" \
    --title "SS-ORL, $CONFIG configuration, $DATASET"
echo "curves: ${OUT%.md}.png"

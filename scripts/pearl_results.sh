#!/usr/bin/env bash
# PEARL's six arms on one pinned source -> target pair (docs/pearl.md "Results"): every arm x seed, PARALLEL runs at a
# time with one torch thread each, then a table of final / best success and score over seeds (scripts/summarize.py).
# Runs go to runs/<the experiment's name for the arm>[_<TAG>]/<target>/seed<seed>; re-running continues unfinished
# runs (resume=true). EXTRA overrides change what a run is, so they need a TAG that names them (its runs' suffix).
#   bash scripts/pearl_results.sh                                            # window-open -> window-close, 3 seeds
#   EXPERIMENT=pearl_drawer_open_to_drawer_close SEEDS="1" UPDATES=20000 bash scripts/pearl_results.sh
#   ARMS="pearl pt_cpa" EXTRA="pearl.teacher.mistake=0.2" TAG=mistake0.2 bash scripts/pearl_results.sh   # label noise
set -euo pipefail
cd "$(dirname "$0")/.."
EXPERIMENT=${EXPERIMENT:-pearl_window_open_to_window_close}
SEEDS=${SEEDS:-1 2 3}
UPDATES=${UPDATES:-100000}
ARMS=${ARMS:-pearl pt_cpa oracle few_labels zero_reward env_reward}
PARALLEL=${PARALLEL:-2}
EXTRA=${EXTRA:-}
TAG=${TAG:-}
PY=.venv/bin/python
[ -f "configs/experiment/$EXPERIMENT.yaml" ] || { echo "error: no configs/experiment/$EXPERIMENT.yaml"; exit 2; }
[ -z "$EXTRA" ] || [ -n "$TAG" ] || { echo "error: EXTRA=\"$EXTRA\" needs a TAG naming its runs (e.g. TAG=mistake0.2)"; exit 2; }
# one line per arm: <arm> <run name> <source task> <source tier> <target task> <target tier>
ARM_LINES=$($PY - "$EXPERIMENT" "$TAG" $ARMS <<'PYEOF'
import sys
from embodied_rl.runs import compose_config
experiment, tag, arms = sys.argv[1], sys.argv[2], sys.argv[3:]
for arm in arms:
    cfg = compose_config([f"experiment={experiment}", f"pearl.arm={arm}"])
    name = f"{cfg.name}_{tag}" if tag else cfg.name
    print(arm, name, cfg.source.task, cfg.source.dataset, cfg.target.task, cfg.target.dataset)
PYEOF
)
read -r _ _ SOURCE SOURCE_TIER TARGET TARGET_TIER <<<"$(head -n 1 <<<"$ARM_LINES")"
# the datasets first, one at a time: parallel runs must not build the same dataset together
$PY scripts/make_datasets.py metaworld --tasks "${SOURCE#metaworld/}" --tiers "$SOURCE_TIER" --episodes 50
$PY scripts/make_datasets.py metaworld --tasks "${TARGET#metaworld/}" --tiers "$TARGET_TIER" --episodes 50
mkdir -p runs/logs
for seed in $SEEDS; do
    while read -r arm name _; do
        echo "$arm $name $seed"
    done <<<"$ARM_LINES"
done | xargs -P "$PARALLEL" -n 3 sh -c '
    log=runs/logs/$1_'"${TARGET#metaworld/}"'_seed$2.log
    '"$PY"' scripts/train.py experiment='"$EXPERIMENT"' pearl.arm=$0 name=$1 seed=$2 trainer.total_updates='"$UPDATES"' \
        threads=1 trainer.progress=false pearl.reward.progress=false resume=true '"$EXTRA"' >"$log" 2>&1 \
        && echo "done: $0 seed $2" || echo "FAILED: $0 seed $2 (see $log)"'
RUN_DIRS=$(while read -r _ name _; do echo "runs/$name"; done <<<"$ARM_LINES")
$PY scripts/summarize.py $RUN_DIRS --metric success_rate
$PY scripts/summarize.py $RUN_DIRS --metric normalized_score

#!/usr/bin/env bash
# PEARL's six arms on one pinned source -> target pair (docs/pearl.md "Results"): every arm x seed, PARALLEL runs at a
# time with one torch thread each, then a table of final / best success and score over seeds (scripts/summarize.py).
# Runs go to runs/pearl_<arm>_from_<source>/<target>/seed<seed>; re-running continues unfinished runs (resume=true).
#   bash scripts/pearl_results.sh                                            # window-open -> window-close, 3 seeds
#   EXPERIMENT=pearl_drawer_open_to_drawer_close SEEDS="1" UPDATES=20000 bash scripts/pearl_results.sh
#   ARMS="pearl pt_cpa" EXTRA="pearl.teacher.mistake=0.2" bash scripts/pearl_results.sh        # a label-noise arm
set -euo pipefail
cd "$(dirname "$0")/.."
EXPERIMENT=${EXPERIMENT:-pearl_window_open_to_window_close}
SEEDS=${SEEDS:-1 2 3}
UPDATES=${UPDATES:-100000}
ARMS=${ARMS:-pearl pt_cpa oracle few_labels zero_reward env_reward}
PARALLEL=${PARALLEL:-2}
EXTRA=${EXTRA:-}
PY=.venv/bin/python
[ -f "configs/experiment/$EXPERIMENT.yaml" ] || { echo "error: no configs/experiment/$EXPERIMENT.yaml"; exit 2; }
read -r SOURCE TARGET < <($PY -c "from omegaconf import OmegaConf
cfg = OmegaConf.load('configs/experiment/$EXPERIMENT.yaml'); print(cfg.source.task, cfg.target.task)")
# the datasets first, one at a time: parallel runs must not build the same dataset together
$PY scripts/make_datasets.py metaworld --tasks "${SOURCE#metaworld/},${TARGET#metaworld/}" --tiers mixed --episodes 50
mkdir -p runs/logs
for seed in $SEEDS; do
    for arm in $ARMS; do
        echo "$arm $seed"
    done
done | xargs -P "$PARALLEL" -n 2 sh -c '
    log=runs/logs/'"$EXPERIMENT"'_$0_seed$1.log
    '"$PY"' scripts/train.py experiment='"$EXPERIMENT"' pearl.arm=$0 seed=$1 trainer.total_updates='"$UPDATES"' \
        threads=1 trainer.progress=false pearl.reward.progress=false resume=true '"$EXTRA"' >"$log" 2>&1 \
        && echo "done: $0 seed $1" || echo "FAILED: $0 seed $1 (see $log)"'
$PY scripts/summarize.py runs/pearl_*_from_"${SOURCE#metaworld/}" --metric success_rate
$PY scripts/summarize.py runs/pearl_*_from_"${SOURCE#metaworld/}" --metric normalized_score

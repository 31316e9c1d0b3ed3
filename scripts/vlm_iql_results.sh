#!/usr/bin/env bash
# VLM-labelled offline RL's arms (docs/vlm_iql.md "Results"): every task x arm x seed, PARALLEL runs at a time with one
# torch thread each, then tables of final / best success and score over seeds (scripts/summarize.py). Arms:
#   env_reward           IQL on the env's reward          bc                  behaviour cloning (agent=bc)
#   scripted             IQL on the image reward learned from the scripted teacher's frame labels
#   scripted_noise<P>    the same with a fraction P of the labels flipped (e.g. scripted_noise0.1)
#   vlm                  labels from the VLM of EXTRA="llm.base_url=... llm.model=..." (none is reachable here)
# Runs go to runs/vlm_<agent>_<arm>[_noise<P>]/<task>/seed<seed>; re-running continues unfinished runs (resume=true).
#   TASKS="drawer-open-v3" SEEDS="1" UPDATES=20000 bash scripts/vlm_iql_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-drawer-open-v3 sweep-into-v3 soccer-v3}
TIER=${TIER:-medium}
SEEDS=${SEEDS:-1 2 3}
UPDATES=${UPDATES:-100000}
ARMS=${ARMS:-env_reward bc scripted scripted_noise0.1 scripted_noise0.3}
PARALLEL=${PARALLEL:-2}
EXTRA=${EXTRA:-}
PY=.venv/bin/python
# the datasets first, one at a time (frames without shadows: about 8 minutes per 50-episode tier on a CPU)
for task in $TASKS; do
    $PY scripts/make_datasets.py metaworld --tasks "$task" --tiers "$TIER" --episodes 50 --frames 64 --no-shadows
done
mkdir -p runs/logs
for seed in $SEEDS; do
    for task in $TASKS; do
        for arm in $ARMS; do
            echo "$task $arm $seed"
        done
    done
done | xargs -P "$PARALLEL" -n 3 sh -c '
    task=$0 arm=$1 seed=$2
    case $arm in
        env_reward) args="vlm_iql.arm=env_reward" ;;
        bc) args="agent=bc vlm_iql.arm=env_reward" ;;
        scripted) args="vlm_iql.arm=scripted" ;;
        scripted_noise*) args="vlm_iql.arm=scripted vlm_iql.labelling.noise=${arm#scripted_noise} name=vlm_iql_$arm" ;;
        vlm) args="vlm_iql.arm=vlm" ;;
        *) echo "unknown arm $arm"; exit 2 ;;
    esac
    log=runs/logs/vlm_iql_${task}_${arm}_seed$seed.log
    '"$PY"' scripts/train.py experiment=vlm_iql env.task=metaworld/$task trainer.dataset='"$TIER"' env.shadows=false \
        $args seed=$seed trainer.total_updates='"$UPDATES"' threads=1 trainer.progress=false resume=true '"$EXTRA"' \
        >"$log" 2>&1 && echo "done: $task $arm seed $seed" || echo "FAILED: $task $arm seed $seed (see $log)"'
$PY scripts/summarize.py runs/vlm_* --metric success_rate
$PY scripts/summarize.py runs/vlm_* --metric normalized_score

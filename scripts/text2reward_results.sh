#!/usr/bin/env bash
# Text2Reward's arms without a reachable LLM (docs/text2reward.md "Results"): SAC on reward code against SAC on the
# env's own (expert-written) reward, every task x arm x seed, PARALLEL runs at a time with one torch thread each.
# The "generated" arm's code comes from scripts/stand_in_reward_code.py: PROGRAMS HAND-WRITTEN BY US (the few-shot
# examples), not model output, served on a local endpoint; its answers are kept in runs/stand_in_answers/text2reward
# (replay them with EXTRA="llm=replay llm.replay_dir=runs/stand_in_answers/text2reward"). With a real endpoint, give
# ENDPOINT="llm.base_url=... llm.model=..." and the stand-in is not started.
# Runs go to runs/text2reward_<arm>/metaworld/<task>/seed<seed>; re-running continues unfinished runs (resume=true).
#   TASKS="reach-v3" SEEDS="1" STEPS=40000 bash scripts/text2reward_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-reach-v3 button-press-topdown-v3 drawer-open-v3 door-open-v3 push-v3}
SEEDS=${SEEDS:-1 2 3}
STEPS=${STEPS:-200000}
ARMS=${ARMS:-generated env_reward}
PARALLEL=${PARALLEL:-2}
EXTRA=${EXTRA:-}
ENDPOINT=${ENDPOINT:-}
PY=.venv/bin/python
mkdir -p runs/logs
if [ -z "$ENDPOINT" ]; then
    $PY scripts/stand_in_reward_code.py >runs/logs/stand_in_reward_code.url 2>runs/logs/stand_in_reward_code.log &
    server=$!
    trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s runs/logs/stand_in_reward_code.url ] && break; sleep 0.2; done
    ENDPOINT="llm.base_url=$(head -1 runs/logs/stand_in_reward_code.url) llm.model=stand-in"
    ENDPOINT="$ENDPOINT llm.cache_dir=runs/stand_in_answers/text2reward"
fi
for seed in $SEEDS; do
    for task in $TASKS; do
        for arm in $ARMS; do
            echo "$task $arm $seed"
        done
    done
done | xargs -P "$PARALLEL" -n 3 sh -c '
    task=$0 arm=$1 seed=$2
    log=runs/logs/text2reward_${task}_${arm}_seed$seed.log
    '"$PY"' scripts/train.py experiment=text2reward env.task=metaworld/$task text2reward.arm=$arm seed=$seed \
        trainer.total_steps='"$STEPS"' threads=1 trainer.progress=false resume=true '"$ENDPOINT"' '"$EXTRA"' \
        >"$log" 2>&1 && echo "done: $task $arm seed $seed" || echo "FAILED: $task $arm seed $seed (see $log)"'
$PY scripts/summarize.py runs/text2reward_* --metric success_rate

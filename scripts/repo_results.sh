#!/usr/bin/env bash
# RePo against Dreamer on distracted DMC tasks, then RePo's test-time adaptation (docs/repo.md "Results"): every
# task x objective x seed trained with EXPERIMENT (default repo_cpu, the reduced CPU budget; repo is the paper's),
# PARALLEL runs at a time with one torch thread each; then each RePo run adapted to the unseen test distractors with
# ADAPT's budget; then one table (train split, test split, test split after adaptation).
# Runs: runs/<objective>[_cpu]/<task>/seed<seed> and runs/repo_adapt/<task>/seed<seed>; re-running continues
# unfinished runs (resume=true), so a long run can span several sessions.
#   TASKS="dmc/walker-walk" SEEDS="1" bash scripts/repo_results.sh
#   EXPERIMENT=repo ADAPT="" PARALLEL=1 bash scripts/repo_results.sh     # the paper's budget, on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-dmc/walker-walk dmc/cheetah-run}
SEEDS=${SEEDS:-1 2 3}
OBJECTIVES=${OBJECTIVES:-repo dreamer}
EXPERIMENT=${EXPERIMENT:-repo_cpu}
PARALLEL=${PARALLEL:-2}
EXTRA=${EXTRA:-}
# CPU adaptation budget (ours): 5k agent steps, 20 updates of 256 frames every 250 steps (400 updates)
ADAPT=${ADAPT-repo_adapt.env_steps=5000 repo_adapt.updates_per_collect=20 repo_adapt.adaptation.batch_size=256 repo_adapt.adaptation.paired_batch_size=256 repo_adapt.eval_episodes=5}
PY=.venv/bin/python
suffix=$([ "$EXPERIMENT" = repo_cpu ] && echo _cpu || true)
mkdir -p runs/logs
for seed in $SEEDS; do
    for task in $TASKS; do
        for objective in $OBJECTIVES; do
            echo "$task $objective $seed"
        done
    done
done | xargs -P "$PARALLEL" -n 3 sh -c '
    task=$0 objective=$1 seed=$2
    log=runs/logs/repo_$(echo $task | tr / _)_${objective}'"$suffix"'_seed$seed.log
    '"$PY"' scripts/train.py experiment='"$EXPERIMENT"' env.task=$task agent.objective=$objective seed=$seed \
        threads=1 trainer.progress=false resume=true '"$EXTRA"' >"$log" 2>&1 \
        && echo "done: $task $objective seed $seed" || echo "FAILED: $task $objective seed $seed (see $log)"'
for seed in $SEEDS; do
    for task in $TASKS; do
        case " $OBJECTIVES " in *" repo "*) ;; *) continue ;; esac
        log=runs/logs/repo_adapt_$(echo "$task" | tr / _)_seed$seed.log
        $PY scripts/train.py experiment=repo_adapt checkpoint=runs/repo$suffix/$task/seed$seed seed=$seed threads=1 \
            trainer.progress=false resume=true $ADAPT >"$log" 2>&1 \
            && echo "adapted: $task seed $seed" || echo "FAILED adaptation: $task seed $seed (see $log)"
    done
done
$PY - "$suffix" $OBJECTIVES <<'PY'
import json, sys
from pathlib import Path

import numpy as np

suffix, objectives = sys.argv[1], sys.argv[2:]
rows = {}
for objective in objectives:
    for report in sorted(Path("runs").glob(f"{objective}{suffix}/*/*/seed*/repo.json")):
        r = json.loads(report.read_text())
        adapted = report.parents[4] / "repo_adapt" / r["task"] / report.parent.name / "repo_adapt.json"
        adapted_run = objective == "repo" and adapted.exists()  # only RePo runs are adapted
        after = json.loads(adapted.read_text())["after"]["return_mean"] if adapted_run else np.nan
        test = (r.get("test_distractors") or {}).get("return_mean", np.nan)
        rows.setdefault((r["task"], objective), []).append((r["train_distractors"]["return_mean"], test, after))
print("| task | objective | seeds | train split | test split | test split, adapted |")
print("|---|---|---|---|---|---|")
for (task, objective), values in sorted(rows.items()):
    a = np.array(values, dtype=float)
    cells = [f"{np.nanmean(a[:, k]):.1f} ± {np.nanstd(a[:, k]):.1f}" if not np.isnan(a[:, k]).all() else "-" for k in range(3)]
    print(f"| {task} | {objective}{suffix} | {len(values)} | " + " | ".join(cells) + " |")
PY

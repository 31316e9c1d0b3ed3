#!/usr/bin/env bash
# Same results before and after a change? Tiny SAC (1 and 2 envs, with a resume), IQL (with a resume), TD3+BC, BC and
# the three SS-ORL arms, run from a git revision (default HEAD, in a temporary worktree) and from the working tree,
# then compared run by run (scripts/compare_runs.py): metrics, results, pipeline reports and final weights.
#   bash scripts/compare_revisions.sh [REV]          # about 3 minutes on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-HEAD}
PY=$PWD/.venv/bin/python
WORK=$(mktemp -d)
trap 'git worktree remove --force "$WORK/base" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-osmesa} MINARI_DATASETS_PATH=$WORK/minari
git worktree add --detach "$WORK/base" "$REV" >/dev/null

$PY scripts/collect.py env.task=metaworld/drawer-open-v3 episodes=12 policy.noise_std=0.5 policy.epsilon=0.3 \
    reference.episodes=2 dataset.name=compare env.time_limit=100 progress=false >/dev/null

record() {  # record REPO OUT
    local repo=$1 out=$2
    local common="env.task=metaworld/drawer-open-v3 env.time_limit=100 logging.tensorboard=false logging.console=false
        trainer.progress=false trainer.eval_episodes=2 trainer.eval_videos=0 agent.hidden_dims=[32,32]"
    local online="experiment=sac_metaworld $common trainer.seed_steps=200 trainer.eval_every=300 trainer.checkpoint_every=300"
    local offline="$common trainer.dataset=compare trainer.eval_every=200 trainer.checkpoint_every=200"
    (
        cd "$repo"
        $PY scripts/train.py $online run_dir=$out/sac trainer.total_steps=600
        $PY scripts/train.py $online run_dir=$out/sac trainer.total_steps=900 resume=true
        $PY scripts/train.py $online run_dir=$out/sac_2envs trainer.total_steps=600 trainer.num_envs=2 trainer.utd_ratio=0.5
        for agent in iql td3bc bc; do
            $PY scripts/train.py experiment=$agent $offline run_dir=$out/$agent trainer.total_updates=400
        done
        $PY scripts/train.py experiment=iql $offline run_dir=$out/iql trainer.total_updates=600 resume=true
        for arm in semi_supervised labelled_only oracle; do
            $PY scripts/train.py experiment=ssorl_metaworld $offline run_dir=$out/ssorl_$arm ssorl.arm=$arm \
                trainer.total_updates=400 ssorl.idm.steps=300 ssorl.idm.eval_every=100 ssorl.idm.progress=false \
                ssorl.labelled_fraction=0.2
        done
    ) >"$out.log" 2>&1 || { echo "error: the runs of $repo failed; see the end of the log:"; tail -20 "$out.log"; exit 2; }
}
echo "[compare] runs of $REV"; record "$WORK/base" "$WORK/before"
echo "[compare] runs of the working tree"; record "$PWD" "$WORK/after"
$PY scripts/compare_runs.py "$WORK/before" "$WORK/after"

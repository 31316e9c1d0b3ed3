#!/usr/bin/env bash
# The README's main job, from a fresh clone: set up, build a small dataset, train SAC briefly, evaluate with videos.
#
#   bash scripts/quickstart.sh                 # 3-4 minutes on a 2-core CPU
#   STEPS=50000 TASK=metaworld/drawer-open-v3 bash scripts/quickstart.sh
#
# Everything lands under runs/quickstart/ (datasets under ~/.minari/datasets, or $MINARI_DATASETS_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
TASK=${TASK:-metaworld/reach-v3}
STEPS=${STEPS:-20000}
OUT=runs/quickstart

echo "== 1/4 dataset: 10 episodes of the scripted expert with action noise on $TASK"
$PY scripts/collect.py env.task="$TASK" episodes=10 policy.noise_std=0.3 reference.episodes=3 \
    dataset.name=quickstart overwrite=true

echo "== 2/4 video of Meta-World's scripted expert"
$PY scripts/evaluate.py --scripted "$TASK" --episodes 1 --video-size 128 --out "$OUT/scripted" env.shadows=false

echo "== 3/4 SAC for $STEPS env steps (TensorBoard: .venv/bin/tensorboard --logdir $OUT)"
$PY scripts/train.py experiment=sac_metaworld env.task="$TASK" name=quickstart run_dir="$OUT/sac" overwrite=true \
    trainer.total_steps="$STEPS" trainer.seed_steps=2000 trainer.eval_every=4000 trainer.eval_episodes=5 \
    trainer.eval_videos=0 trainer.checkpoint_every=4000

echo "== 4/4 evaluation of the trained agent, with videos"
$PY scripts/evaluate.py "$OUT/sac" --episodes 5 --videos 2 --video-size 128 --out "$OUT/sac/eval" env.shadows=false

echo
echo "done: dataset id embodied_rl/${TASK/\//-}/quickstart-v0"
echo "      scripted-expert video  $OUT/scripted/videos/"
echo "      SAC run                $OUT/sac/ (metrics.csv, tb/, checkpoints/, results.json)"
echo "      SAC evaluation         $OUT/sac/eval/results.json and videos/"

#!/usr/bin/env bash
# PEARL's label-noise sweep at the reward level (docs/pearl.md): for each mistake probability of the source teacher
# and seed, CPA transfers the noisy source labels to the target, then a Preference Transformer (plain, PT) and its
# robust version (RRL, RPT) are trained on the transferred labels and judged on the target (scripts/pearl_transfer.py
# --rewards). One JSON per point in runs/noise_sweep/; points already there are skipped, so a re-run continues.
#   bash scripts/pearl_noise_sweep.sh
#   PAIR=drawer-open-v3:drawer-close-v3 SEEDS="0" MISTAKES="0.0 0.3" bash scripts/pearl_noise_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PAIR=${PAIR:-window-open-v3:window-close-v3}
SEEDS=${SEEDS:-0 1 2}
MISTAKES=${MISTAKES:-0.0 0.1 0.2 0.3}
METHOD=${METHOD:-fast}
OUT=${OUT:-runs/noise_sweep}
mkdir -p "$OUT"
for seed in $SEEDS; do
    for mistake in $MISTAKES; do
        out="$OUT/${PAIR/:/_to_}_mistake${mistake}_seed${seed}.json"
        [ -f "$out" ] && continue
        .venv/bin/python scripts/pearl_transfer.py --pairs "$PAIR" --methods "$METHOD" --num-pairs 1000 --seeds "$seed" \
            --rewards plain,robust --threads 1 --out "$out" "pearl.teacher.mistake=$mistake"
    done
done
.venv/bin/python - "$OUT" <<'PYEOF'
import json, sys
from collections import defaultdict
from pathlib import Path
import numpy as np
rows = [row for path in sorted(Path(sys.argv[1]).glob("*.json")) for row in json.loads(path.read_text())]
table = defaultdict(list)
for row in rows:
    table[(row["source"], row["target"], row["teacher"]["mistake"])].append(row)
print("| source -> target | mistake | seeds | transfer accuracy | PT: accuracy | RPT: accuracy | PT: return Spearman | RPT: return Spearman |")
print("|---|---|---|---|---|---|---|---|")
for (source, target, mistake), group in sorted(table.items()):
    def cell(values):
        values = np.asarray(values, dtype=float)
        return f"{values.mean():.3f} ± {values.std():.3f}"
    print(f"| {source} -> {target} | {mistake} | {len(group)} | {cell([r['transfer_accuracy'] for r in group])} | "
          f"{cell([r['reward_plain']['true_accuracy'] for r in group])} | {cell([r['reward_robust']['true_accuracy'] for r in group])} | "
          f"{cell([r['reward_plain']['return_spearman'] for r in group])} | {cell([r['reward_robust']['return_spearman'] for r in group])} |")
PYEOF

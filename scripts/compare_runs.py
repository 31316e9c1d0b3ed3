"""Compare two folders of runs made by the same commands (e.g. before and after a refactor): for each run directory
in both, are metrics.csv (less timing columns), results.json (less the device), pipeline reports (*.json at the top
of the run directory) and the final weights (checkpoints/latest.pt, every agent tensor) identical?

    python scripts/compare_runs.py runs_before/ runs_after/        # exit 0 when every run is identical

scripts/compare_revisions.sh makes both folders from two git revisions.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

TIMING = ("per_second",)  # columns that measure the machine, not the run


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in csv.DictReader(f)]


def tensors(tree, prefix: str = "") -> dict:
    """Every tensor of a nested state dict, by its dotted path."""
    import torch

    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(tensors(value, f"{prefix}{key}."))
        elif torch.is_tensor(value):
            out[f"{prefix}{key}"] = value
    return out


def compare_run(a: Path, b: Path) -> list[str]:
    """The names of what differs between run directories `a` and `b` (empty: identical)."""
    import torch

    differences = []
    if metric_rows(a) != metric_rows(b):
        differences.append("metrics.csv")
    results = [{k: v for k, v in json.loads((d / "results.json").read_text()).items() if k != "device"} for d in (a, b)]
    if results[0] != results[1]:
        differences.append("results.json")
    for report in sorted(p.name for p in a.glob("*.json") if p.name != "results.json"):
        if not (b / report).exists() or json.loads((a / report).read_text()) != json.loads((b / report).read_text()):
            differences.append(report)
    weights = [tensors(torch.load(d / "checkpoints" / "latest.pt", weights_only=False)["agent"]) for d in (a, b)]
    if weights[0].keys() != weights[1].keys() or any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0]):
        differences.append("weights")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    runs = sorted(p.name for p in args.before.iterdir() if (p / "results.json").exists())
    missing = [name for name in runs if not (args.after / name / "results.json").exists()]
    if not runs or missing:
        print(f"error: no runs to compare in {args.before}" if not runs else f"error: {args.after} lacks {missing}")
        return 2
    identical = True
    for name in runs:
        differences = compare_run(args.before / name, args.after / name)
        identical &= not differences
        print(f"{name}: {'identical' if not differences else 'DIFFERENT: ' + ', '.join(differences)}")
    print("all runs identical" if identical else "some runs differ")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

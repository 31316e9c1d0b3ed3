"""Learning curves (mean and spread over seeds) from run directories to a PNG.

    python scripts/plot.py runs/sac/metaworld/reach-v3 --metric eval/success_rate --out reach.png

Each argument is a run directory (holding metrics.csv) or a folder searched recursively for them;
runs are grouped by their parent of `seed*` directories (one curve per group, one line per group label).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_metric(csv_path: Path, metric: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get(metric) not in (None, ""):
                steps.append(float(row["step"]))
                values.append(float(row[metric]))
    return np.array(steps), np.array(values)


def group_runs(paths: list[Path]) -> dict[str, list[Path]]:
    """Group label -> metrics.csv files; a run reached through several (overlapping) arguments counts once."""
    groups: dict[str, list[Path]] = defaultdict(list)
    seen: set[Path] = set()
    for root in paths:
        for csv_path in sorted(
            [root / "metrics.csv"] if (root / "metrics.csv").exists() else root.rglob("metrics.csv")
        ):
            if csv_path.resolve() in seen:
                continue
            seen.add(csv_path.resolve())
            run = csv_path.parent
            label = str(run.parent) if run.name.startswith("seed") else str(run)
            groups[label].append(csv_path)
    if not groups:
        raise SystemExit(f"no metrics.csv under {', '.join(map(str, paths))}")
    return groups


def columns(csv_paths: list[Path]) -> set[str]:
    """Every column header in the given metrics.csv files."""
    found: set[str] = set()
    for csv_path in csv_paths:
        with csv_path.open(newline="") as f:
            found.update(next(csv.reader(f), []))
    return found


def curve(csv_paths: list[Path], metric: str, points: int = 100):
    """Interpolate every seed onto a common step grid; returns steps, mean, std and the seed count."""
    series = [read_metric(p, metric) for p in csv_paths]
    series = [(s, v) for s, v in series if len(s) > 0]
    if not series:
        return None
    end = min(s[-1] for s, _ in series)
    start = max(s[0] for s, _ in series)
    grid = np.linspace(start, end, points) if end > start else np.array([end])
    stacked = np.stack([np.interp(grid, s, v) for s, v in series])
    return grid, stacked.mean(0), stacked.std(0), len(series)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--metric",
        action="append",
        help="column of metrics.csv (repeatable); default eval/success_rate and eval/return_mean",
    )
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    metrics = args.metric or ["eval/success_rate", "eval/return_mean"]
    groups = group_runs(args.runs)
    available = columns([p for paths in groups.values() for p in paths])
    missing = [m for m in metrics if m not in available]
    if missing:
        raise SystemExit(
            f"error: no column {', '.join(missing)} in metrics.csv; available: {', '.join(sorted(available))}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, csv_paths in groups.items():
            result = curve(csv_paths, metric)
            if result is None:
                continue
            steps, mean, std, n = result
            ax.plot(steps, mean, label=f"{label} (n={n})")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("step (env steps online, updates offline)")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 400k, not 400000: long runs' labels overlap
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()

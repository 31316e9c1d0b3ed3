"""Final and best evaluation, mean ± std over seeds, from run directories, as a Markdown table.

    python scripts/summarize.py runs/sac_check                       # every run below, grouped by seed*/
    python scripts/summarize.py runs/iql runs/ssorl_* --metric normalized_score

Each run directory holds results.json (written by scripts/train.py at the end of a run); runs are grouped
by the parent of their `seed*` directory, like scripts/plot.py does, each run counted once. Unfinished runs (no
results.json) are listed as such, never silently dropped; a mean over fewer runs than the group's seeds (some
lack the metric) ends in `(n=K)`. A `--metric` that no run's final/best holds is an error listing those it holds;
so is a results.json that is not a JSON object with numbers under final/best, naming the file.

    python scripts/summarize.py runs/ssorl_paper_* --metric normalized_score --gap semi_supervised_k1:oracle_k1

`--gap A:B` (repeatable) adds a table of differences between arms: every group whose label contains A is paired
with the group whose label is the same with B in its place (one row per task, say), and the row gives the final
value of the first metric in both, the difference A - B of their means over seeds and its 95 % confidence interval
(Welch's t interval, scipy.stats.ttest_ind with unequal variances: seeds are few and the arms' spreads differ; "-"
where either arm has fewer than 2 seeds). A gap that pairs no groups is an error listing the groups.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def _run_dirs(root: Path) -> list[Path]:
    """Directories under `root` holding a run's config.yaml; Hydra's own `.hydra/config.yaml` (written inside the
    run directory by a single, non-multirun run) is not a run."""
    found = (p.parent for p in root.rglob("config.yaml"))
    return [run for run in found if not any(part.startswith(".") for part in run.relative_to(root).parts)]


def load_results(path: Path) -> dict:
    """A run's results.json: an object whose final/best (when present) are objects of numbers."""
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise SystemExit(f"error: {path}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path}: not valid JSON ({err})") from None
    except OSError as err:
        raise SystemExit(f"error: {path}: {err.strerror or err}") from None
    if not isinstance(results, dict):
        raise SystemExit(f"error: {path}: holds a {type(results).__name__}, not an object")
    for kind in ("final", "best"):
        values = results.get(kind)
        if values is not None and not isinstance(values, dict):
            raise SystemExit(f"error: {path}: {kind} is a {type(values).__name__}, not an object")
        for key, value in (values or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SystemExit(f"error: {path}: {kind}.{key} is {value!r}, not a number")
    return results


def collect(paths: list[Path]) -> tuple[dict[str, list[dict]], list[Path]]:
    """Results grouped by label, and unfinished runs; a run reached through several arguments counts once."""
    groups: dict[str, list[dict]] = defaultdict(list)
    unfinished, seen = [], set()
    for root in paths:
        runs = [root] if (root / "config.yaml").exists() else sorted(_run_dirs(root))
        for run in runs:
            if run.resolve() in seen:
                continue
            seen.add(run.resolve())
            if not (run / "results.json").exists():
                unfinished.append(run)
                continue
            label = str(run.parent) if run.name.startswith("seed") else str(run)
            groups[label].append(load_results(run / "results.json"))
    return groups, unfinished


def mean_std(values: list[float], runs: int) -> str:
    """`mean ± std`, ending in `(n=K)` when only K of the group's `runs` have the value."""
    text = f"{np.mean(values):.2f} ± {np.std(values):.2f}"
    return text if len(values) == runs else f"{text} (n={len(values)})"


def values_of(results: list[dict], kind: str, metric: str) -> list[float]:
    """`metric` of `kind` (final or best) in each run's results that holds it."""
    return [r[kind][metric] for r in results if r.get(kind) and metric in r[kind]]


def table(groups: dict[str, list[dict]], metrics: list[str]) -> str:
    header = ["runs", "seeds", "steps"] + [f"{kind} {m}" for m in metrics for kind in ("final", "best")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, results in sorted(groups.items()):
        steps = sorted({r.get("steps", r.get("updates")) for r in results})
        row = [label, str(len(results)), ",".join(map(str, steps))]
        for metric in metrics:
            for kind in ("final", "best"):
                values = values_of(results, kind, metric)
                row.append(mean_std(values, len(results)) if values else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def gap_table(groups: dict[str, list[dict]], metric: str, first: str, second: str) -> str:
    """Final `metric` of each group containing `first` against its partner with `second` in its place: means,
    difference and its 95 % Welch t interval."""
    from scipy import stats

    pairs = [(label, label.replace(first, second)) for label in sorted(groups) if first in label]
    pairs = [(a, b) for a, b in pairs if b in groups]
    if not pairs:
        raise SystemExit(
            f"error: --gap {first}:{second}: no group holds {first!r} with a partner holding {second!r} in its place; "
            f"groups: {', '.join(sorted(groups))}"
        )
    lines = [
        f"| runs ({first} vs {second}) | seeds | final {metric}: {first} | {second} | difference | 95 % CI (Welch) |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in pairs:
        x, y = values_of(groups[a], "final", metric), values_of(groups[b], "final", metric)
        if not x or not y:
            lines.append(f"| {a} | {len(x)}, {len(y)} | - | - | - | - |")
            continue
        interval = "-"
        if len(x) >= 2 and len(y) >= 2:
            low, high = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
            interval = "- (no spread)" if np.isnan(low) else f"[{low:.2f}, {high:.2f}]"
        cells = [a, f"{len(x)}, {len(y)}", mean_std(x, len(x)), mean_std(y, len(y)), f"{np.mean(x) - np.mean(y):.2f}"]
        lines.append("| " + " | ".join([*cells, interval]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--metric",
        action="append",
        help="key of results.json's final/best (repeatable); default success_rate and return_mean",
    )
    parser.add_argument(
        "--gap",
        metavar="A:B",
        action="append",
        default=[],
        help="also the difference of the first metric's final value between arms A and B, with its 95%% CI "
        "(repeatable)",
    )
    args = parser.parse_args(argv)
    for gap in args.gap:
        if gap.count(":") != 1 or "" in gap.split(":"):
            parser.error(f"--gap takes A:B (two non-empty parts of the group labels), got {gap!r}")
    groups, unfinished = collect(args.runs)
    if not groups:
        raise SystemExit(f"error: no finished runs (results.json) under {', '.join(map(str, args.runs))}")
    known = {
        key for results in groups.values() for r in results for kind in ("final", "best") for key in r.get(kind) or {}
    }
    missing = [m for m in args.metric or [] if m not in known]  # not the defaults: a run may lack one
    if missing:  # the error plot.py gives for a column no metrics.csv holds
        available = ", ".join(sorted(known))
        raise SystemExit(f"error: no metric {', '.join(missing)} in results.json (final, best); available: {available}")
    metrics = args.metric or ["success_rate", "return_mean"]
    text = table(groups, metrics)
    for gap in args.gap:
        text += "\n\n" + gap_table(groups, metrics[0], *gap.split(":"))
    print(text)
    for run in unfinished:
        print(f"unfinished (no results.json): {run}")
    return text


if __name__ == "__main__":
    main()

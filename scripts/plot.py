"""Learning curves (mean and spread over seeds) from run directories to a PNG.

    python scripts/plot.py runs/sac/metaworld/reach-v3 --metric eval/success_rate --out reach.png

Each argument is a run directory (holding metrics.csv) or a folder searched recursively for them;
runs are grouped by their parent of `seed*` directories (one curve per group, one line per group label).

A group's curve covers only the steps every one of its seeds has reached (where the mean over its `n` seeds is
defined): a seed that stops early (still running, or crashed) ends the curve there, and a note on stderr names
it. Curves are drawn at the seeds' evaluation steps (interpolated where seeds differ; 100 evenly spaced steps
when there are more), with markers when there are few (the spread at a lone step as an error bar). The last line
of a metrics.csv cut short (no newline at its end: the run is being written, or was killed mid-row) is skipped
with a warning; any other malformed content is an error naming the file. `--out` picks the image format by its
extension (png when it has none; a directory gets curves.png); one matplotlib cannot write is refused up front.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

Table = tuple[list[str], list[tuple[int, list[str]]]]  # a metrics.csv's header and (line number, fields) rows


def read_csv(csv_path: Path) -> Table:
    """The header and the (line number, fields) rows of a metrics.csv (main reads each file once)."""
    try:
        text = csv_path.read_bytes().decode("utf-8")
        records = list(csv.reader(io.StringIO(text, newline="")))
    except UnicodeDecodeError as err:
        raise SystemExit(f"error: {csv_path}: not UTF-8 text (byte {err.start})") from None
    except (OSError, csv.Error) as err:
        raise SystemExit(f"error: {csv_path}: {err}") from None
    rows = [(line, fields) for line, fields in enumerate(records, 1) if fields]  # csv.reader: [] for a blank line
    if not rows:
        return [], []
    (_, header), rows = rows[0], rows[1:]
    if rows and not text.endswith("\n"):
        line, fields = rows.pop()
        print(
            f"warning: {csv_path}: skipping its last line {','.join(fields)!r}, cut short (no newline at its end)",
            file=sys.stderr,
        )
    for line, fields in rows:
        if len(fields) != len(header):
            raise SystemExit(f"error: {csv_path}: line {line} has {len(fields)} fields, the header {len(header)}")
    if "step" not in header:
        raise SystemExit(f"error: {csv_path}: no step column (header: {','.join(header)})")
    return header, rows


def read_metric(csv_path: Path, metric: str, tables: dict[Path, Table] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The steps and values of `metric` in a metrics.csv (from `tables` when it holds the file, as read_csv read it)."""
    header, rows = tables[csv_path] if tables and csv_path in tables else read_csv(csv_path)
    if metric not in header:
        return np.array([]), np.array([])
    step_at, metric_at = header.index("step"), header.index(metric)
    steps, values = [], []
    for line, fields in rows:
        if fields[metric_at] != "":
            for name, at, out in (("step", step_at, steps), (metric, metric_at, values)):
                try:
                    out.append(float(fields[at]))
                except ValueError:
                    raise SystemExit(
                        f"error: {csv_path}: line {line}: {name} is {fields[at]!r}, not a number"
                    ) from None
    return np.array(steps), np.array(values)


IDM_FOLDER = "idm"  # an SS-ORL run's inverse dynamics model curves: <run>/idm/metrics.csv


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
            if run.name == IDM_FOLDER and (run.parent / "metrics.csv").exists():  # an SS-ORL run's IDM curves
                seeds = run.parent.parent if run.parent.name.startswith("seed") else run.parent
                label = f"{seeds}/{IDM_FOLDER}"  # grouped over seeds like their runs, kept apart from them
            else:
                label = str(run.parent) if run.name.startswith("seed") else str(run)
            groups[label].append(csv_path)
    if not groups:
        raise SystemExit(f"error: no metrics.csv under {', '.join(map(str, paths))}")
    return groups


def curve(csv_paths: list[Path], metric: str, points: int = 100, tables: dict[Path, Table] | None = None):
    """Every seed on the steps they all cover: the seeds' own steps there (interpolated where they differ), or
    `points` evenly spaced steps when there are more; returns steps, mean, std and the seed count, or None when
    no seed has the metric or the seeds share no step. `tables`: the files as read_csv read them."""
    series = [read_metric(p, metric, tables) for p in csv_paths]
    series = [(s, v) for s, v in series if len(s) > 0]
    if not series:
        return None
    end = min(s[-1] for s, _ in series)
    start = max(s[0] for s, _ in series)
    if start > end:
        return None
    grid = np.unique(np.concatenate([s[(s >= start) & (s <= end)] for s, _ in series]))
    if len(grid) > points:
        grid = np.linspace(start, end, points)
    stacked = np.stack([np.interp(grid, s, v) for s, v in series])
    return grid, stacked.mean(0), stacked.std(0), len(series)


def _step(step: float) -> str:
    return str(int(step)) if float(step).is_integer() else f"{step:g}"


def range_notes(label: str, csv_paths: list[Path], metric: str, tables: dict[Path, Table] | None = None) -> list[str]:
    """Why `curve` draws less than the group's runs hold: the runs without the metric, and those that stop
    first or start last (the curve covers only the steps every run has reached)."""
    series = {str(p.parent): read_metric(p, metric, tables)[0] for p in csv_paths}
    have = {run: s for run, s in series.items() if len(s) > 0}
    if not have:
        return [f"note: no run of {label} has {metric} yet; no curve"]
    notes = [
        f"note: {run} has no {metric} yet; the curve of {label} leaves it out" for run in series if run not in have
    ]
    end, last = min(s[-1] for s in have.values()), max(s[-1] for s in have.values())
    start, first = max(s[0] for s in have.values()), min(s[0] for s in have.values())
    short = ", ".join(run for run, s in have.items() if s[-1] == end)
    late = ", ".join(run for run, s in have.items() if s[0] == start)
    if start > end:
        notes.append(
            f"note: the runs of {label} share no step of {metric} ({short} stops at step {_step(end)}, {late} starts "
            f"at step {_step(start)}); no curve"
        )
        return notes
    if end < last:
        notes.append(
            f"note: {short} stops at step {_step(end)} of {metric}; the curve of {label} ends there (other runs go "
            f"on to step {_step(last)})"
        )
    if start > first:
        notes.append(f"note: {late} starts at step {_step(start)} of {metric}; the curve of {label} starts there")
    return notes


def output_path(out: Path, parser: argparse.ArgumentParser) -> Path:
    """`--out` as matplotlib will write it (a directory gets curves.png, a name without extension .png), or a usage
    error when matplotlib cannot write its format."""
    from matplotlib.figure import Figure

    if out.is_dir():
        out = out / "curves.png"
    elif not out.suffix:
        out = out.with_name(out.name + ".png")
    supported = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in supported:
        parser.error(
            f"--out {out}: matplotlib cannot write {out.suffix[1:]!r} files; supported: {', '.join(sorted(supported))}"
        )
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--metric",
        action="append",
        help="column of metrics.csv (repeatable); default eval/success_rate and eval/return_mean",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("curves.png"), help="image file (its extension picks the format; png if none)"
    )
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    out = output_path(args.out, parser)
    metrics = args.metric or ["eval/success_rate", "eval/return_mean"]
    groups = group_runs(args.runs)
    tables = {p: read_csv(p) for paths in groups.values() for p in paths}  # each file read once, in this call
    available = {name for header, _ in tables.values() for name in header}
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
            if label.endswith(f"/{IDM_FOLDER}") != metric.startswith(f"{IDM_FOLDER}/"):
                continue  # IDM curves (their own step axis) only in idm/ plots, and runs' curves never there
            for note in range_notes(label, csv_paths, metric, tables):
                print(note, file=sys.stderr)
            result = curve(csv_paths, metric, tables=tables)
            if result is None:
                continue
            steps, mean, std, n = result
            marker = "o" if len(steps) <= 20 else None  # a lone point is invisible without one
            (line,) = ax.plot(steps, mean, marker=marker, markersize=3, label=f"{label} (n={n})")
            if len(steps) > 1:
                ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
            else:  # a band one step wide draws nothing
                ax.errorbar(steps, mean, yerr=std, color=line.get_color(), capsize=3)
        idm = metric.startswith(f"{IDM_FOLDER}/")
        ax.set_xlabel("IDM update" if idm else "step (env steps online, updates offline)")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 400k, not 400000: long runs' labels overlap
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    except OSError as err:
        raise SystemExit(f"error: {out}: {err.strerror or err}") from None
    finally:
        plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()

"""Build every tier of a graded offline benchmark, one command per suite (D4RL recipe, Fu et al. 2020).

    python scripts/make_datasets.py metaworld --tasks drawer-open-v3,button-press-v3 --episodes 50
    python scripts/make_datasets.py metaworld --tasks drawer-open-v3 --tiers mixed --frames 64   # with frames
    python scripts/make_datasets.py mujoco --task Hopper-v5 --run runs/sac_mujoco/mujoco/Hopper-v5/seed1 --episodes 20

Meta-World: expert / medium / random / mixed tiers from the scripted policies. MuJoCo (or any SAC run of
scripts/train.py, trained with trainer.keep_checkpoints=0): random / medium / medium-replay / expert / medium-expert.
Datasets are local Minari datasets `embodied_rl/<env id>/<tier>-v0` ($MINARI_DATASETS_PATH, or --root);
existing ones are kept unless --overwrite. See docs/datasets.md. The --summary file's folder is created (and
checked to be writable) before anything is built. A run whose medium checkpoint would be the expert one (no
earlier checkpoint with an evaluation return is left: train with trainer.keep_checkpoints=0) is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from embodied_rl import cli


def expert_step(text: str) -> int | str:
    """--expert-step: a checkpoint step or `best`."""
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a checkpoint step or 'best', got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from embodied_rl.pipelines.offline_datasets import METAWORLD_TASKS, METAWORLD_TIERS, SAC_RUN_TIERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    suites = parser.add_subparsers(dest="suite", required=True)

    def common(sub: argparse.ArgumentParser, tiers: tuple[str, ...]) -> None:
        sub.add_argument("--episodes", type=cli.number(int, ">= 1"), default=50, help="episodes per tier (default 50)")
        sub.add_argument("--tiers", default=",".join(tiers), help=f"comma-separated subset of {','.join(tiers)}")
        sub.add_argument("--seed", type=cli.number(int, ">= 0"), default=0, help="episode i is reset with seed + i")
        sub.add_argument(
            "--reference-episodes", type=cli.number(int, ">= 1"), default=10, help="rollouts for the reference returns"
        )
        sub.add_argument(
            "--root", default=None, help="datasets folder (default $MINARI_DATASETS_PATH or ~/.minari/datasets)"
        )
        sub.add_argument("--overwrite", action="store_true", help="rebuild datasets that already exist")
        sub.add_argument("--summary", default=None, help="also write the summary table as JSON to this file")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        cli.add_threads_option(sub)

    metaworld = suites.add_parser("metaworld", help="scripted-policy tiers of Meta-World tasks")
    metaworld.add_argument("--tasks", default=",".join(METAWORLD_TASKS), help="comma-separated Meta-World tasks")
    metaworld.add_argument(
        "--time-limit", type=cli.number(int, ">= 1"), default=None, help="steps per episode (default 500)"
    )
    metaworld.add_argument(
        "--medium-noise",
        default=None,
        metavar="STD,EPS",
        help="medium tier's noise_std,epsilon for every task (default: measured per task, 0,0.8 for others)",
    )
    metaworld.add_argument(
        "--frames",
        type=cli.number(int, ">= 1"),
        default=None,
        metavar="SIZE",
        help="also store a rendered SIZE x SIZE frame of every step (e.g. 64; default: no frames)",
    )
    metaworld.add_argument("--camera", default=None, help="camera of the frames (default corner4)")
    metaworld.add_argument(
        "--no-shadows", action="store_true", help="frames without shadows and reflections (5-8x faster on OSMesa)"
    )
    common(metaworld, METAWORLD_TIERS)

    mujoco = suites.add_parser("mujoco", help="D4RL tiers from the checkpoints of one SAC run")
    mujoco.add_argument("--run", required=True, help="run directory of scripts/train.py (keep_checkpoints=0)")
    mujoco.add_argument("--task", default=None, help="checked against the run's task, e.g. Hopper-v5")
    mujoco.add_argument(
        "--medium-fraction",
        type=cli.number(float, "(0, 1]"),
        default=1 / 3,
        help="medium: first checkpoint reaching this fraction of the expert return (default 1/3)",
    )
    mujoco.add_argument("--medium-step", type=int, default=None, help="use this checkpoint step as medium")
    mujoco.add_argument(
        "--expert-step",
        type=expert_step,
        default=None,
        help="use this checkpoint step as expert, or 'best': the highest-scoring checkpoint (--select) "
        "(default: the final one; SAC's return can dip at the end)",
    )
    mujoco.add_argument(
        "--select",
        choices=("metrics", "evaluate"),
        default="metrics",
        help="checkpoint returns from metrics.csv (default) or by evaluating each checkpoint",
    )
    mujoco.add_argument(
        "--eval-episodes",
        type=cli.number(int, ">= 1"),
        default=5,
        help="episodes per checkpoint with --select evaluate",
    )
    mujoco.add_argument("--device", default="cpu", help="where the checkpoints' agents act (default cpu)")
    common(mujoco, SAC_RUN_TIERS)
    return parser.parse_args(argv)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """The summary as a fixed-width text table (also valid Markdown)."""
    header = [
        "dataset",
        "tier",
        "episodes",
        "steps",
        "return",
        "success",
        "ref random",
        "ref expert",
        "normalized",
        "time s",
        "status",
    ]
    lines = [
        [
            row["dataset_id"],
            row["tier"],
            str(row["episodes"]),
            str(row["steps"]),
            _fmt(row["return_mean"], ".1f"),
            _fmt(row["success_rate"], ".2f"),
            _fmt(row["ref_min"], ".1f"),
            _fmt(row["ref_max"], ".1f"),
            _fmt(row["normalized"], ".1f"),
            _fmt(row["seconds"], ".1f"),
            row["status"],
        ]
        for row in rows
    ]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]  # rows may be []
    out = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.summary:  # its folder is created, and the file checked to be writable, before any work
        try:
            cli.writable(args.summary)
        except cli.NotWritable as err:
            raise SystemExit(f"[make_datasets] error: cannot write --summary {args.summary}: {err}") from None
    if args.root is not None:  # Minari reads this variable each time it touches the disk
        os.environ["MINARI_DATASETS_PATH"] = os.path.abspath(args.root)
    from embodied_rl.threads import set_threads

    print(f"[make_datasets] {set_threads(args.threads, option='--threads')}")
    from embodied_rl.data import DatasetError
    from embodied_rl.envs.tasks import METAWORLD, UnknownTaskError, resolve_task
    from embodied_rl.pipelines.offline_datasets import RecipeError, metaworld_tiers, sac_run_tiers

    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    start, rows = time.time(), []
    try:
        if not tiers:
            raise RecipeError(f"--tiers {args.tiers!r} names no tier")
        if args.suite == "metaworld":
            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
            if not tasks:
                raise RecipeError(f"--tasks {args.tasks!r} names no task")
            medium = None
            if args.frames is None and (args.camera is not None or args.no_shadows):
                raise RecipeError("--camera and --no-shadows set how frames are rendered: add --frames SIZE")
            if args.medium_noise is not None:
                try:
                    std, eps = (float(x) for x in args.medium_noise.split(","))
                except ValueError:
                    raise RecipeError(f"--medium-noise takes STD,EPS (e.g. 0,0.8), got {args.medium_noise!r}") from None
                if not (std >= 0 and 0 <= eps <= 1):
                    raise RecipeError(f"--medium-noise needs STD >= 0 and 0 <= EPS <= 1, got {args.medium_noise!r}")
                medium = (std, eps)
            for task in tasks:  # every name checked before anything is built
                if resolve_task(task)[0] != METAWORLD:
                    raise RecipeError(f"{task!r} is not a Meta-World task")
            for task in tasks:
                rows += metaworld_tiers(
                    task,
                    args.episodes,
                    tiers,
                    args.seed,
                    args.time_limit,
                    args.reference_episodes,
                    args.overwrite,
                    not args.no_progress,
                    medium,
                    frames=args.frames,
                    camera=args.camera,
                    shadows=not args.no_shadows,
                )
        else:
            rows, choice = sac_run_tiers(
                args.run,
                args.episodes,
                tiers,
                args.task,
                args.seed,
                args.medium_fraction,
                args.medium_step,
                args.select,
                args.eval_episodes,
                args.reference_episodes,
                args.overwrite,
                not args.no_progress,
                args.device,
                expert_step=args.expert_step,
            )
            if choice.get("medium_step") is not None:
                scores = choice.get("scores") or {}
                print(
                    f"[make_datasets] expert checkpoint step {choice['expert_step']} (final {choice['final_step']}), "
                    f"medium step {choice['medium_step']} (returns: "
                    + ", ".join(f"{s}: {v:.1f}" for s, v in sorted(scores.items()))
                    + ")"
                )
    except (RecipeError, DatasetError, UnknownTaskError, FileNotFoundError) as err:
        raise SystemExit(f"[make_datasets] error: {err}") from None
    except KeyboardInterrupt:
        print(
            "\n[make_datasets] interrupted: the tier being written was removed, finished ones are kept; the same "
            "command builds the rest",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    print(format_table(rows))
    print(
        f"[make_datasets] {sum(r['status'] == 'built' for r in rows)} built, "
        f"{sum(r['status'] == 'exists' for r in rows)} kept (exist; --overwrite rebuilds) in "
        f"{time.time() - start:.1f}s"
    )
    if args.summary:
        Path(args.summary).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()

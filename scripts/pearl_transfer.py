"""Transfer accuracy of PEARL's cross-task preference alignment, without any RL: for each source -> target pair,
the labels CPA transfers to target pairs against the noise-free scripted target labels, per GW solver; with
`--rewards plain,robust` also the reward models (PT and RPT) trained on those labels, judged on the target by the
accuracy of their preferences on fresh noise-free scripted pairs and by how their episode returns rank the dataset's
episodes against the true returns (Spearman).

    python scripts/pearl_transfer.py                                  # the pinned pairs of configs/experiment/pearl_*
    python scripts/pearl_transfer.py --pairs button-press-v3:door-open-v3 --methods exact,fast --num-pairs 1000
    python scripts/pearl_transfer.py --features state_actions --seeds 0,1,2 --out pearl_transfer.json
    python scripts/pearl_transfer.py --pairs window-open-v3:window-close-v3 --methods exact --rewards plain,robust \
        pearl.teacher.mistake=0.2                                     # one point of the label-noise sweep

The datasets are the `mixed` tiers (scripts/make_datasets.py metaworld --tasks ... --tiers mixed); the other
settings are configs/pearl/default.yaml's (`pearl.*` as key=value arguments change them, e.g. pearl.tie_band=0.1).
A same-task pair (door-open-v3:door-open-v3, two different samples) is the check that the transfer itself works.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from embodied_rl import cli

REPO = Path(__file__).resolve().parents[1]


def pinned_pairs() -> list[tuple[str, str]]:
    """(source, target) of every configs/experiment/pearl_<source>_to_<target>.yaml."""
    pairs = []
    for path in sorted((REPO / "configs" / "experiment").glob("pearl_*_to_*.yaml")):
        cfg = OmegaConf.load(path)
        pairs.append((cfg.source.task, cfg.target.task))
    return pairs


def judge_reward(transferred, target, s, robust: bool, eval_pairs: int, seed: int) -> dict[str, float]:
    """A reward model (s.reward, robust or not) trained on the transferred labels, judged on the target: accuracy on
    `eval_pairs` fresh target pairs with noise-free scripted labels, and the rank correlation of episode returns."""
    from embodied_rl.data.preferences import pair_segment_arrays, sample_segment_pairs
    from embodied_rl.labelling.preference_teacher import ScriptedTeacher
    from embodied_rl.rewards import evaluate_reward_model, relabel_trajectories, return_correlation, train_reward_model

    def arrays(pairs):
        first, second = pair_segment_arrays(pairs, target, keys=("obs", "action"))
        return first["obs"], first["action"], second["obs"], second["action"], pairs.label

    cfg = replace(s.reward, robust=robust, progress=False)
    model, report = train_reward_model(*arrays(transferred), cfg, seed=seed)
    fresh = sample_segment_pairs(target, eval_pairs, s.segment_length, seed=seed + 1000)
    metrics = evaluate_reward_model(model, *arrays(ScriptedTeacher().label(fresh, target, seed=seed)))
    correlation = return_correlation(relabel_trajectories(model, target), [t.rewards for t in target])
    return {
        "val_accuracy": report.best_val_accuracy,
        "true_accuracy": metrics["accuracy"],
        "return_spearman": correlation["spearman"],
        "return_pearson": correlation["pearson"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=None, help="comma-separated source:target tasks (default: the pinned)")
    parser.add_argument("--methods", default="exact,fast", help="GW solvers: exact, entropic, fast")
    parser.add_argument("--features", default="states", choices=["states", "state_actions"])
    parser.add_argument("--num-pairs", type=cli.number(int, ">= 1"), default=1000, help="source and target pairs")
    parser.add_argument("--dataset", default="mixed", help="tier (or Minari id) of both tasks")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    parser.add_argument(
        "--rewards", default="", help="also train reward models on the transferred labels: plain (PT), robust (RPT)"
    )
    parser.add_argument(
        "--eval-pairs", type=cli.number(int, ">= 1"), default=500, help="fresh target pairs (--rewards)"
    )
    parser.add_argument("overrides", nargs="*", help="pearl.<key>=<value> settings")
    cli.add_threads_option(parser)
    args = parser.parse_args(argv)

    from embodied_rl.data import DatasetError, load_trajectories
    from embodied_rl.data.preferences import sample_segment_pairs
    from embodied_rl.envs.tasks import canonical_task
    from embodied_rl.pipelines.pearl import PEARLConfig, TaskData, cross_task_labels, source_labels
    from embodied_rl.threads import set_threads

    print(set_threads(args.threads))
    defaults = OmegaConf.load(REPO / "configs" / "pearl" / "default.yaml")
    try:
        defaults.merge_with_dotlist([o.removeprefix("pearl.") for o in args.overrides])
        settings = PEARLConfig.from_mapping(OmegaConf.to_container(defaults, resolve=True))
        pairs = pinned_pairs() if args.pairs is None else [tuple(p.split(":")) for p in args.pairs.split(",")]
        pairs = [(canonical_task(source), canonical_task(target)) for source, target in pairs]
        rewards = [r for r in args.rewards.split(",") if r]
        if set(rewards) - {"plain", "robust"}:
            raise ValueError(f"--rewards {args.rewards!r}: choose from plain, robust")
    except (ValueError, KeyError) as err:
        cli.fail(str(err))
    rows = []
    for source_task, target_task in pairs:
        try:
            source = load_trajectories(TaskData(source_task, args.dataset).dataset_id)
            target = load_trajectories(TaskData(target_task, args.dataset).dataset_id)
        except DatasetError as err:
            cli.fail(f"{err} (scripts/make_datasets.py metaworld --tasks ... --tiers {args.dataset} builds it)")
        for seed in [int(s) for s in args.seeds.split(",")]:
            n = args.num_pairs
            s = replace(settings, source=TaskData(source_task), source_pairs=n, target_pairs=n)
            labelled = source_labels(source, s, seed=seed + 1)
            pool = sample_segment_pairs(target, args.num_pairs, s.segment_length, seed=seed)
            for method in args.methods.split(","):
                s = replace(s, gw_method=method, features=args.features)
                transferred, _, report = cross_task_labels(source, labelled, target, pool, s, seed=seed)
                row = {"source": source_task, "target": target_task, "seed": seed, "features": args.features, **report}
                row["teacher"] = s.teacher.as_dict()
                print(
                    f"{source_task} -> {target_task} | seed {seed} | {method:8s} | accuracy "
                    f"{row['transfer_accuracy']:.3f} | GW {row['gw_seconds']:.1f} s | {row['num_transferred']} pairs",
                    flush=True,
                )
                for kind in rewards:
                    judged = judge_reward(transferred, target, s, kind == "robust", args.eval_pairs, seed)
                    row[f"reward_{kind}"] = judged
                    shown = " | ".join(f"{k} {v:.3f}" for k, v in judged.items())
                    print(f"    reward {kind:6s} | {shown}", flush=True)
                rows.append(row)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

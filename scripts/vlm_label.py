"""Preference labels for pairs of rendered frames of an offline dataset, from a vision-language model (RL-VLM-F, Wang
et al. ICML 2024; Venkataraman et al. 2024) or the scripted teacher standing in for it.

    python scripts/make_datasets.py metaworld --tasks drawer-open-v3 --tiers mixed --frames 64   # frames first
    python scripts/vlm_label.py --task drawer-open-v3 --dataset mixed --num-pairs 200 --out runs/vlm_labels/drawer
    python scripts/vlm_label.py --task drawer-open-v3 --teacher scripted --noise 0.1 --out runs/vlm_labels/scripted
    python scripts/vlm_label.py ... --model gpt-4o --base-url http://localhost:8000/v1 --concurrency 4
    python scripts/vlm_label.py ... --backend replay        # stored answers only, nothing sent

The output folder gets labels.npz (PreferencePairs, one frame per "segment"), pairs.npz, progress.jsonl,
summary.json (labelled and dropped counts, agreement with the scripted teacher, usage) and llm_usage.json. Run the
same command again after a kill or an error: finished pairs are kept and cached answers are not paid twice.
Settings: configs/labelling/vlm.yaml (--config another file), the LLM's configs/llm/default.yaml. See
docs/vlm_labelling.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from embodied_rl import cli

REPO = Path(__file__).resolve().parents[1]
PREFIX = "[vlm_label] "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="Meta-World task, e.g. drawer-open-v3")
    parser.add_argument("--dataset", default="mixed", help="tier of scripts/make_datasets.py or a Minari id")
    parser.add_argument("--out", type=Path, required=True, help="output folder (a rerun continues in it)")
    parser.add_argument("--num-pairs", type=cli.number(int, ">= 1"), default=None, help="frame pairs (config: 200)")
    parser.add_argument("--teacher", choices=("vlm", "scripted"), default=None, help="config: vlm")
    parser.add_argument(
        "--noise", type=cli.number(float, "[0, 1]"), default=None, help="fraction of labels flipped (config: 0)"
    )
    parser.add_argument("--seed", type=cli.number(int, ">= 0"), default=None, help="pair sampling seed (config: 0)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "labelling" / "vlm.yaml")
    llm = parser.add_argument_group("LLM (override configs/llm/default.yaml and the config's llm:)")
    llm.add_argument("--model", default=None)
    llm.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    llm.add_argument("--backend", choices=("openai", "replay"), default=None, help="replay: stored answers only")
    llm.add_argument("--concurrency", type=cli.number(int, ">= 1"), default=None, help="requests in flight")
    llm.add_argument("--cache-dir", default=None, help="the answers' cache folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def llm_values(config_llm: dict, args: argparse.Namespace) -> dict:
    """configs/llm/default.yaml, then the labelling config's `llm:`, then the command line."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "llm" / "default.yaml"), resolve=True)
    values.update(config_llm)
    overrides = {
        "model": args.model,
        "base_url": args.base_url,
        "backend": args.backend,
        "concurrency": args.concurrency,
        "cache_dir": args.cache_dir,
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    return values


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from embodied_rl.data import DatasetError, dataset_id_for, load_trajectories, open_dataset
    from embodied_rl.envs.task_descriptions import goal_text
    from embodied_rl.envs.tasks import UnknownTaskError, canonical_task
    from embodied_rl.labelling.frame_pairs import check_frames
    from embodied_rl.labelling.vlm_teacher import ChatAPI, frames_required_message, load_settings, run_labelling

    try:
        task = canonical_task(args.task)
        goal_text(task)  # Meta-World only
        settings = load_settings(
            args.config, num_pairs=args.num_pairs, teacher=args.teacher, noise=args.noise, seed=args.seed
        )
        settings.llm = llm_values(settings.llm, args)
    except (UnknownTaskError, ValueError, OSError) as err:
        cli.fail(str(err), PREFIX)
    try:
        cli.writable(args.out, directory=True)
    except cli.NotWritable as err:
        cli.fail(f"cannot write --out {args.out}: {err}", PREFIX)

    dataset_id = args.dataset if "/" in args.dataset else dataset_id_for(task, args.dataset)
    try:
        trajectories = load_trajectories(dataset_id)
        try:
            check_frames(trajectories, f"dataset {dataset_id!r}")
        except DatasetError:
            metadata = open_dataset(dataset_id).storage.metadata
            raise DatasetError(frames_required_message(dataset_id, metadata, task)) from None
    except DatasetError as err:
        hint = "" if "frames" in str(err) else f" (scripts/make_datasets.py metaworld --tasks {args.task} --frames 64)"
        cli.fail(f"{err}{hint}", PREFIX)

    chat = None
    if settings.teacher == "vlm":
        from embodied_rl.llm import LLMClient, LLMSettings, system_message, user_message

        try:
            client = LLMClient(LLMSettings.from_mapping(settings.llm), usage_path=args.out / "llm_usage.json")
        except ValueError as err:
            cli.fail(str(err), PREFIX)
        chat = ChatAPI(client, user_message, system_message)

    from embodied_rl.llm import LLMError

    try:
        summary = run_labelling(trajectories, args.out, settings, task, dataset_id, chat, not args.no_progress)
    except ValueError as err:  # a folder of other settings, a dataset too small
        cli.fail(str(err), PREFIX)
    except (LLMError, DatasetError) as err:
        done = json.loads((args.out / "summary.json").read_text()) if (args.out / "summary.json").exists() else {}
        cli.fail(
            f"{err}\n{done.get('finished_pairs', 0)} pair(s) finished are kept in {args.out}; run the same command "
            "again to continue",
            PREFIX,
        )
    except KeyboardInterrupt:
        print(f"\n{PREFIX}interrupted: finished pairs are kept in {args.out}; rerun to continue", file=sys.stderr)
        raise SystemExit(130) from None
    print(report(summary))
    if not summary["complete"]:
        cli.fail(
            f"{summary['pending_pairs']} pair(s) got no answer ({summary['usage']['first_error']}); run the same "
            "command again to ask them again",
            PREFIX,
        )
    return summary


def report(summary: dict) -> str:
    """A few lines for the console."""
    dropped = ", ".join(f"{name} {count}" for name, count in summary["dropped"].items())
    agreement = summary["agreement_with_scripted"]
    value = "-" if agreement["agreement"] is None else f"{agreement['agreement']:.3f}"
    usage = summary["usage"]
    return "\n".join(
        [
            f"{PREFIX}{summary['labelled']} of {summary['requested_pairs']} pairs labelled ({summary['source']}); "
            f"dropped: {dropped}; {summary['flipped']} flipped by noise {summary['noise']}",
            f"{PREFIX}agreement with the scripted teacher: {value} over {agreement['compared']} pairs "
            f"({agreement['reference_ties']} equal-reward pairs excluded)",
            f"{PREFIX}queries {usage['queries']} ({usage['cached']} cached, {usage['errors']} failed), tokens "
            f"{usage['prompt_tokens']} in / {usage['completion_tokens']} out; {summary['resumed_pairs']} pairs "
            f"from an earlier run; {summary['seconds']} s",
        ]
    )


if __name__ == "__main__":
    main()

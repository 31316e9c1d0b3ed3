"""Evaluate a checkpoint: success rate, returns, episode lengths and one mp4 per episode.

    python scripts/evaluate.py runs/sac/metaworld/reach-v3/seed1 --episodes 10
    python scripts/evaluate.py runs/.../checkpoints/step_000050000.pt --episodes 5 env.distractors=test
    python scripts/evaluate.py --scripted metaworld/drawer-open-v3 --episodes 3     # Meta-World's expert

The run's own config.yaml rebuilds the env and the agent; `key=value` arguments override it (same keys
as training). Results go to <run>/eval/step_<N>/results.json with the videos beside it; an evaluation with
overrides goes to a folder of its own inside that one, named after the overrides joined by commas (characters
other than letters, digits and `._,=+-` become `_`), e.g. <run>/eval/step_<N>/env.distractors=test/, so that
it never replaces the plain evaluation; --out puts the results where it says. The output folder is created
(and checked to be writable) before any episode runs. Evaluating on another task than the run's prints a note.
The summary line names what was evaluated: `step N` (an online run), `update N` (an offline run) or `scripted`.
A user error (no such checkpoint, an unknown task or env setting, a damaged run, a checkpoint that does not fit the
env, an unwritable output folder) is one `error: ...` line on stderr and exit status 2, before any episode runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

from omegaconf import OmegaConf

from embodied_rl import cli


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="?", help="run directory, checkpoints/ directory or .pt file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. env.distractors=test")
    parser.add_argument(
        "--scripted",
        metavar="TASK",
        default=None,
        help="evaluate Meta-World's scripted expert on TASK instead of a checkpoint",
    )
    parser.add_argument("--episodes", type=cli.number(int, ">= 1"), default=10)
    parser.add_argument(
        "--videos", type=cli.number(int, ">= 0"), default=None, help="episodes to record (default: all)"
    )
    parser.add_argument(
        "--video-size", type=cli.number(int, ">= 1"), default=256, help="frame size of videos of state-based agents"
    )
    parser.add_argument(
        "--fps", type=cli.number(float, "> 0"), default=None, help="video frame rate (default: the env's: real time)"
    )
    parser.add_argument(
        "--seed", type=cli.number(int, ">= 0"), default=100_000, help="seed of the first evaluation episode"
    )
    parser.add_argument(
        "--device", default="auto", help="where the agent acts: auto (cuda if present), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: see above; overrides get their own)"
    )
    args = parser.parse_intermixed_args(argv)
    if args.scripted and args.checkpoint is not None and "=" in str(args.checkpoint):
        args.overrides, args.checkpoint = [str(args.checkpoint), *args.overrides], None  # only overrides given
    if (args.checkpoint is None) == (args.scripted is None):
        parser.error("give either a checkpoint (run directory or .pt file) or --scripted TASK")
    if args.out is not None:
        prepare_out(args.out)

    from embodied_rl.envs import make_env, to_env_config
    from embodied_rl.trainers import evaluate_policy

    try:
        if args.scripted:
            cfg = OmegaConf.create({"env": {"task": args.scripted}})
            cfg.merge_with_dotlist(args.overrides)
        else:
            run_dir, ckpt_path, cfg = load_run(args.checkpoint, args.overrides)
    except (FileNotFoundError, ValueError, KeyError) as err:
        cli.fail(str(err))
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    if env_cfg.get("obs_mode", "state") == "state":
        env_cfg["image_size"] = args.video_size  # pixels only feed the video, so render them large
    try:  # before the env is built: an unknown task or env setting is one error line
        env_cfg["task"] = to_env_config(env_cfg).task  # checked, and canonical: "reach-v3" -> "metaworld/reach-v3"
    except (ValueError, TypeError) as err:  # UnknownTaskError is a ValueError
        cli.fail(str(err))
    if args.scripted:
        from embodied_rl.envs import scripted_policy

        try:  # only Meta-World tasks have one
            policy, info = scripted_policy(env_cfg["task"]), {"policy": "scripted"}
        except ValueError as err:  # a locomotion task
            cli.fail(str(err))
    env = make_env(env_cfg)

    if args.scripted:
        out = args.out or out_dir(Path("runs") / "scripted" / env_cfg["task"] / "eval", args.overrides)
    else:
        from embodied_rl.trainers import load_agent
        from embodied_rl.trainers.loading import CheckpointError, OtherTaskWarning, mismatch_message, other_task_message

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OtherTaskWarning)  # said below as a note
                agent, run_cfg, ckpt = load_agent(ckpt_path, env=env, device=args.device)
        except CheckpointError as err:  # truncated, empty or foreign: name the checkpoints that could be used
            cli.fail(f"{err}{other_checkpoints(ckpt_path)}")
        except RuntimeError as err:
            cli.fail(mismatch_message(err, env))
        except ValueError as err:  # the run's config.yaml holds a setting the agent refuses
            cli.fail(f"{ckpt_path}: {err}")
        if message := other_task_message(run_cfg, env):  # the agent fits this env's spaces
            print(f"note: {message}", file=sys.stderr)
        from embodied_rl.pipelines.base import pipeline_name_of
        from embodied_rl.trainers.evaluation import AgentPolicy

        policy = AgentPolicy(agent)  # deterministic actions; a recurrent agent is reset at each episode start
        info = {"checkpoint": str(ckpt_path), "step": ckpt["step"], "pipeline": pipeline_name_of(run_cfg)}
        out = args.out or out_dir(run_dir / "eval" / f"step_{ckpt['step']:09d}", args.overrides)
    if args.out is None:
        prepare_out(out)
    staging = out / ".partial"  # this evaluation's videos until it is complete: a killed one leaves the last intact
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = evaluate_policy(
            policy,
            env,
            args.episodes,
            seed=args.seed,
            video_dir=staging / "videos",
            videos=args.videos,
            fps=args.fps,
            progress=True,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.update(info, task=env_cfg["task"], overrides=args.overrides)
    score = normalized_score_for(cfg, result["return_mean"], None if args.scripted else (run_dir, run_cfg))
    if score is not None:
        result["normalized_score"] = score
    replace_results(out, staging, result)
    extra = f", normalised score {score:.1f}" if score is not None else ""
    what = progress_label(None if args.scripted else run_cfg, info)
    print(
        f"[eval] {env_cfg['task']} {what}: success {result['success_rate']:.2f}, return "
        f"{result['return_mean']:.1f} ± {result['return_std']:.1f}{extra} over {args.episodes} episodes -> {out}"
    )
    env.close()
    return result


def progress_label(run_cfg, info: dict) -> str:
    """What was evaluated, for the summary line: `scripted`, `step N` (an online run: env steps) or `update N`
    (an offline run, trainer.kind=offline: its step counter counts gradient updates)."""
    if run_cfg is None:
        return "scripted"
    offline = OmegaConf.select(run_cfg, "trainer.kind", default=None) == "offline"
    return f"{'update' if offline else 'step'} {info['step']}"


def load_run(path: Path, overrides: list[str]):
    """(run directory, step_*.pt file, config with the overrides)."""
    from embodied_rl.trainers import find_run, load_run_config

    run_dir, ckpt_path = find_run(path)
    ckpt_path = step_file(ckpt_path)
    cfg = load_run_config(run_dir)  # ValueError naming config.yaml when it is damaged
    try:
        cfg.merge_with_dotlist(overrides)
    except Exception as err:  # OmegaConf's message: a first line, then `full_key: ...` and `object_type=...` lines
        key = getattr(err, "full_key", None)
        raise ValueError(f"bad override{f' {key}' if key else ''}: {str(err).splitlines()[0]}") from err
    return run_dir, ckpt_path, cfg


def out_dir(base: Path, overrides: list[str]) -> Path:
    """`base`, or for an evaluation with overrides its folder inside `base`: the overrides joined by commas,
    characters other than letters, digits and `._,=+-` replaced by `_` (long names shortened with a hash)."""
    if not overrides:
        return base
    joined = ",".join(overrides)
    name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", joined)
    if name.startswith("."):  # never "." or ".." or a hidden folder
        name = "_" + name
    if len(name) > 120:
        name = f"{name[:111]}-{hashlib.sha1(joined.encode()).hexdigest()[:8]}"
    return base / name


def replace_results(out: Path, staging: Path, result: dict) -> None:
    """Put a finished evaluation in `out` in place of the previous one: its results.json goes first (a kill from
    here on leaves no results.json beside a mix of videos), then the videos, then the new results.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").unlink(missing_ok=True)
    videos = out / "videos"
    for old in videos.glob("episode_*.mp4"):
        old.unlink()
    for record in result["per_episode"]:
        if "video" in record:
            videos.mkdir(parents=True, exist_ok=True)
            record["video"] = str(Path(record["video"]).replace(videos / Path(record["video"]).name))
    shutil.rmtree(staging, ignore_errors=True)
    from embodied_rl.files import write_json

    write_json(out / "results.json", result)


def prepare_out(out: Path) -> None:
    """Create `out` (and its parents) and check that a file can be written there: one error line, before any
    episode runs, instead of a traceback after all of them."""
    try:
        cli.writable(out, directory=True)
    except cli.NotWritable as err:
        cli.fail(f"cannot write the results to {out}: {err}")


def other_checkpoints(path: Path) -> str:
    """The step_*.pt files beside a checkpoint that could not be read, as the end of an error line."""
    from embodied_rl.trainers.checkpoint import other_checkpoints as find_others

    others = [p.name for p in find_others(path)]
    if not others:
        return f"; no other step_*.pt checkpoint in {path.parent}"
    return f"; other checkpoints in {path.parent} that could be evaluated instead: {', '.join(others)}"


def step_file(path: Path) -> Path:
    """The step_*.pt file behind `path` (latest.pt is a hard link to the newest one), else `path` itself."""
    path = path.resolve()
    for candidate in sorted(path.parent.glob("step_*.pt"), reverse=True):
        try:
            if candidate.samefile(path):
                return candidate
        except FileNotFoundError:  # pruned by a run still training
            continue
    return path


def normalized_score_for(cfg, episode_return: float, run=None) -> float | None:
    """The D4RL-style score of an offline run, from its dataset's reference returns (when the dataset is here).
    `run`: (run directory, the run's own config), to find the dataset it trained on."""
    if cfg.get("trainer") is None or cfg.trainer.get("kind") != "offline":
        return None
    from embodied_rl.data import open_dataset
    from embodied_rl.trainers import normalized_score

    for dataset_id in offline_dataset_ids(cfg, run):
        try:
            metadata = open_dataset(dataset_id).storage.metadata
        except Exception:
            continue
        return normalized_score(episode_return, metadata.get("ref_min_score"), metadata.get("ref_max_score"))
    return None


def offline_dataset_ids(cfg, run=None) -> list[str]:
    """The Minari ids of the dataset whose references score this evaluation, the first one found counts: the one
    the run trained on, as its results.json records it (a run made before task names were canonicalised may have
    used a bare-name id), unless the overrides change the task or the dataset; then `trainer.dataset` resolved
    for `env.task`."""
    from embodied_rl.data import dataset_id_for

    name = cfg.trainer.dataset
    ids = [name if "/" in name else dataset_id_for(cfg.env.task, name)]
    if run is not None:
        run_dir, run_cfg = run
        same = all(
            OmegaConf.select(cfg, key) == OmegaConf.select(run_cfg, key) for key in ("env.task", "trainer.dataset")
        )
        try:
            recorded = json.loads((run_dir / "results.json").read_text()).get("dataset") if same else None
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded not in ids:
            ids.insert(0, recorded)
    return ids


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

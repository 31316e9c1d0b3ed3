"""Offline datasets of graded quality, after the D4RL recipe (Fu, Kumar, Nachum, Tucker, Levine, "D4RL:
Datasets for Deep Data-Driven Reinforcement Learning", arXiv:2004.07219, 2020).

Meta-World (`metaworld_tiers`), from the scripted v3 policies:
    expert   the noise-free scripted policy
    medium   the scripted policy with epsilon-random actions, per task epsilon measured so that its
             success rate lies clearly between random and expert (`MEDIUM_NOISE`)
    random   uniform actions
    mixed    equal shares of episodes from `MIXED_LEVELS`, very noisy to noise-free, in that order: what
             a learning agent's replay holds (D4RL's medium-replay, with noise levels in place of
             training stages)

Locomotion (`sac_run_tiers`), from the checkpoints of one SAC run of `scripts/train.py`, as D4RL:
    random         uniform actions
    medium         a checkpoint whose evaluation return first reaches `medium_fraction` (1/3) of the
                   expert checkpoint's, stochastic actions
    medium-replay  the replay buffer saved in that checkpoint: every transition of training up to it
    expert         the final checkpoint (or `expert_step`: SAC's return can dip at the end of a run),
                   stochastic actions
    medium-expert  `episodes` episodes of the medium checkpoint, then `episodes` of the expert's: D4RL's
                   concatenation of its medium and expert sets (here fresh rollouts; the medium half repeats
                   the medium tier's episodes, the expert half's resets continue after them)

Every tier is a local Minari dataset `embodied_rl/<env id>/<tier>-v0`, with the reference returns of a
random policy and of the noise-free expert (scripted policy / expert checkpoint, deterministic) as
`ref_min_score` / `ref_max_score`, and the recipe, statistics and success rate in
`metadata["embodied_rl"]`.

Meta-World tiers may also carry rendered frames (`frames=SIZE`): a square SIZE-pixel image of every
observation, reset frame first (`Trajectory.frames`, (T+1, SIZE, SIZE, 3) uint8, stored raw in the infos), as
VLM preference labelling (RL-VLM-F, Wang et al. 2024; Venkataraman et al. 2024) and image reward models need.
"""

from __future__ import annotations

import csv
import json
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from embodied_rl.data import minari_io
from embodied_rl.data.collection import REFERENCE_SEED_OFFSET, iterate_schedule, reference_returns, write_trajectories
from embodied_rl.data.policies import NoisyPolicy, Policy, RandomPolicy, scripted_expert
from embodied_rl.data.replay import chronological_rows
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.trainers.checkpoint import load_checkpoint
from embodied_rl.trainers.loading import load_checkpoint_policy
from embodied_rl.validation import check_ranges

METAWORLD_TIERS = ("expert", "medium", "random", "mixed")
SAC_RUN_TIERS = ("random", "medium", "medium-replay", "expert", "medium-expert")
MEDIUM_TIERS = ("medium", "medium-replay", "medium-expert")  # the tiers that need the medium checkpoint
POLICY_KINDS = ("scripted", "random", "checkpoint")  # make_behaviour_policy
METAWORLD_TASKS = (
    "drawer-open-v3", "button-press-v3", "door-open-v3", "window-open-v3", "sweep-into-v3", "plate-slide-v3",
)  # fmt: skip

# medium tier: (noise_std, epsilon) of the scripted policy, set by measuring success over 20-30 episodes of
# 500 steps at several epsilons so that it sits near the middle between random (0) and expert (see
# docs/datasets.md). The scripted policies are closed-loop and recover from most noise: success stays near 1
# up to epsilon 0.6-0.7 and falls steeply after, so it takes a large share of uniformly random actions.
MEDIUM_NOISE: dict[str, tuple[float, float]] = {
    "drawer-open-v3": (0.0, 0.78),
    "button-press-v3": (0.0, 0.8),
    "door-open-v3": (0.0, 0.8),
    "window-open-v3": (0.0, 0.84),
    "sweep-into-v3": (0.0, 0.85),
    "plate-slide-v3": (0.0, 0.8),
}
DEFAULT_MEDIUM_NOISE = (0.0, 0.8)  # tasks not measured yet
# mixed tier: (noise_std, epsilon) levels from very noisy to the expert, equal numbers of episodes each.
MIXED_LEVELS: tuple[tuple[float, float], ...] = (
    (1.0, 0.95), (1.0, 0.9), (0.5, 0.8), (0.5, 0.6), (0.3, 0.4), (0.1, 0.2), (0.0, 0.0),
)  # fmt: skip


class RecipeError(ValueError):
    """A dataset recipe cannot run: an unknown task, a missing run directory, a checkpoint without replay."""


# ---------------------------------------------------------------- shared pieces


def split_episodes(episodes: int, parts: int) -> list[int]:
    """`episodes` split into `parts` counts as equal as possible, the first ones larger."""
    return [episodes // parts + (k < episodes % parts) for k in range(parts)]


def _references(
    env: gym.Env, expert: Policy, episodes: int, seed: int, progress: bool
) -> tuple[float, float, dict[str, Any]]:
    """(ref_min_score, ref_max_score, details): mean returns of uniform actions and of the noise-free expert,
    on seeds the datasets never use (as scripts/collect.py)."""
    seed += REFERENCE_SEED_OFFSET
    details = {
        "random": reference_returns(env, RandomPolicy(env.action_space, seed), episodes, seed, progress, "ref random"),
        "expert": reference_returns(env, expert, episodes, seed, progress, "ref expert"),
    }
    return details["random"]["return_mean"], details["expert"]["return_mean"], details


def tier_summary(dataset_id: str, tier: str, seconds: float | None = None, status: str = "built") -> dict[str, Any]:
    """One row of the summary table, read back from the dataset's metadata."""
    dataset = minari_io.open_dataset(dataset_id)
    metadata = dataset.storage.metadata
    stats = metadata.get("embodied_rl", {}).get("collection", {})
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    row = {
        "dataset_id": dataset_id,
        "tier": tier,
        "status": status,
        "episodes": dataset.total_episodes,
        "steps": dataset.total_steps,
        "return_mean": stats.get("return_mean"),
        "success_rate": stats.get("success_rate"),
        "ref_min": ref_min,
        "ref_max": ref_max,
        "normalized": None,
        "seconds": seconds,
    }
    if None not in (ref_min, ref_max, row["return_mean"]) and ref_max != ref_min:
        row["normalized"] = 100.0 * (row["return_mean"] - ref_min) / (ref_max - ref_min)
    return row


def _write_tier(
    trajectories: Iterator[Trajectory],
    dataset_id: str,
    env: gym.Env,
    env_cfg: dict[str, Any],
    tier: str,
    how: str,
    recipe: dict[str, Any],
    references: tuple[float, float, dict[str, Any]],
    reference_episodes: int,
    seed: int,
    overwrite: bool,
    frames: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one tier with the same metadata layout as scripts/collect.py, plus `embodied_rl.recipe`;
    `frames` ({"size", "camera", "shadows"}) when the trajectories carry rendered frames."""
    start = time.time()
    ref_min, ref_max, ref_details = references
    metadata = {
        "ref_min_score": float(ref_min),
        "ref_max_score": float(ref_max),
        "num_episodes_average_score": int(reference_episodes),
        "embodied_rl": {
            "env": env_cfg,
            "policy": {"kind": tier, "description": how},
            "seed": int(seed),
            "record_frames": frames is not None,
            **({"frames": frames} if frames is not None else {}),
            "reference": ref_details,
            "recipe": {"tier": tier, **recipe},
        },
    }
    flush_every = 10 if frames is not None else 50  # frames are large: fewer episodes held in memory
    dataset, stats = write_trajectories(
        trajectories, dataset_id, env, metadata, algorithm_name=how, overwrite=overwrite, flush_every=flush_every
    )
    description = (
        f"{tier} tier (D4RL-style recipe): {stats['episodes']} episodes of {how} on {env_cfg['task']}; "
        f"success rate {stats['success_rate']:.2f}, return {stats['return_mean']:.1f} +- {stats['return_std']:.1f}; "
        f"reference returns random {ref_min:.1f}, expert {ref_max:.1f}"
    )
    minari_io.update_metadata(dataset, {"description": description})
    return tier_summary(dataset_id, tier, time.time() - start)


def _stored_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """The settings a tier was built with, named as in the requests of `_pending`."""
    ours = metadata.get("embodied_rl", {})
    stored = {
        "record_frames": ours.get("record_frames"),  # every tier _write_tier made says; False: no frames
        "seed": ours.get("seed"),
        "episodes": metadata.get("total_episodes"),
        "reference episodes": metadata.get("num_episodes_average_score"),
    }
    env = dict(ours.get("env", {}))
    if ours.get("record_frames") is False:  # how it would render matters only to a tier with frames
        for key in ("image_size", "camera", "shadows"):
            env.pop(key, None)
    return {  # only the keys the metadata has: a tier built before a key existed is not refused for it
        **{key: value for key, value in stored.items() if value is not None},
        **{f"env.{key}": value for key, value in env.items()},
        **{f"recipe.{key}": value for key, value in ours.get("recipe", {}).items()},
    }


def _pending(task: str, requests: dict[str, dict[str, Any]], overwrite: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Tiers still to build, and summary rows of the ones already there (kept unless `overwrite`).

    `requests` maps each tier to the settings asked for now; a kept tier built with other settings is an
    error (its data or reference returns would not match the other tiers'). A tier whose writing was
    interrupted (a killed run) is deleted and built again."""
    todo, skipped = [], []
    for tier, requested in requests.items():
        dataset_id = minari_io.dataset_id_for(task, tier)
        if minari_io.is_incomplete(dataset_id):  # False where there is no dataset
            print(f"[datasets] {dataset_id}: marked incomplete (interrupted): building it again", file=sys.stderr)
            minari_io.delete_dataset(dataset_id)
        if not minari_io.dataset_exists(dataset_id) or overwrite:
            todo.append(tier)
            continue
        stored = _stored_settings(minari_io.open_dataset(dataset_id).storage.metadata)
        differ = [
            f"{key} {stored[key]!r} (requested {value!r})"
            for key, value in json.loads(json.dumps(requested)).items()
            if key in stored and stored[key] != value
        ]
        if differ:
            raise RecipeError(
                f"tier {tier} ({dataset_id}) exists with other settings: {', '.join(differ)}; "
                "pass the same options, rebuild it with --overwrite, or delete it"
            )
        skipped.append(tier_summary(dataset_id, tier, status="exists"))
    return todo, skipped


def _request(
    seed: int, episodes: int | None, reference_episodes: int, env_cfg: dict[str, Any], **recipe: Any
) -> dict[str, Any]:
    """The settings an existing tier must have been built with to be kept (as named by `_stored_settings`)."""
    request: dict[str, Any] = {"seed": seed}
    if episodes is not None:
        request["episodes"] = episodes
    request["reference episodes"] = reference_episodes
    request.update({f"env.{key}": value for key, value in env_cfg.items() if key != "seed"})
    request.update({f"recipe.{key}": value for key, value in recipe.items()})
    return request


def _check_ranges(**values: tuple[Any, str]) -> None:
    """One RecipeError naming every setting out of its range (`name=(value, range)`, ranges as in
    `embodied_rl.validation.in_range`), e.g. episode counts of at least one (a reference return is no mean of
    zero episodes) and a seed >= 0."""
    try:
        check_ranges("recipe settings", {k: v for k, (v, _) in values.items()}, {k: r for k, (_, r) in values.items()})
    except ValueError as err:
        raise RecipeError(str(err)) from None


def _check_tiers(tiers: Sequence[str], known: Sequence[str]) -> None:
    unknown = [t for t in tiers if t not in known]
    if unknown:
        raise RecipeError(f"unknown tier(s) {unknown}; choose from {', '.join(known)}")


# ---------------------------------------------------------------- Meta-World


def metaworld_tiers(
    task: str,
    episodes: int,
    tiers: Sequence[str] = METAWORLD_TIERS,
    seed: int = 0,
    time_limit: int | None = None,
    reference_episodes: int = 10,
    overwrite: bool = False,
    progress: bool = True,
    medium: tuple[float, float] | None = None,
    frames: int | None = None,
    camera: str | None = None,
    shadows: bool = True,
) -> list[dict[str, Any]]:
    """Build the Meta-World tiers of `task` ("drawer-open-v3" or "metaworld/drawer-open-v3"); returns one
    summary row per tier. Existing datasets are kept (and reported) unless `overwrite`. `medium` =
    (noise_std, epsilon) replaces the measured `MEDIUM_NOISE` of the task.

    `frames=SIZE` stores a rendered SIZE x SIZE frame of every observation (the env's own render path,
    `render_frame`), from `camera` (default Meta-World's `corner4`) with or without `shadows` (off renders
    5-8x faster under OSMesa). A kept tier must then hold frames of that size and camera; a tier with
    frames also serves a request without them."""
    from embodied_rl.envs import make_env, to_env_config
    from embodied_rl.envs.tasks import DEFAULT_CAMERA, METAWORLD, UnknownTaskError, resolve_task

    try:
        suite, name = resolve_task(task)
    except UnknownTaskError as err:
        raise RecipeError(str(err)) from None
    if suite != METAWORLD:
        raise RecipeError(f"{task!r} is not a Meta-World task; locomotion tiers come from a SAC run (sac_run_tiers)")
    medium_noise, medium_eps = medium or MEDIUM_NOISE.get(name, DEFAULT_MEDIUM_NOISE)
    _check_ranges(
        episodes=(episodes, ">= 1"),
        reference_episodes=(reference_episodes, ">= 1"),
        seed=(seed, ">= 0"),
        time_limit=(time_limit, "None or >= 1"),
        medium_noise_std=(medium_noise, ">= 0"),
        medium_epsilon=(medium_eps, "[0, 1]"),
        frames=(frames, "None or >= 1"),
    )
    _check_tiers(tiers, METAWORLD_TIERS)
    task = f"{suite}/{name}"
    render = {} if frames is None else {"image_size": frames, "camera": camera or DEFAULT_CAMERA[METAWORLD]}
    try:
        env_cfg = asdict(
            to_env_config(task=task, obs_mode="state", time_limit=time_limit, seed=seed, shadows=shadows, **render)
        )
    except ValueError as err:
        raise RecipeError(str(err)) from None
    frame_info = None if frames is None else {"size": frames, "camera": render["camera"], "shadows": shadows}
    requests = {tier: _request(seed, episodes, reference_episodes, env_cfg) for tier in tiers}
    for request in requests.values():
        if frame_info is None:  # rendering settings matter only to a tier with frames
            for key in ("env.image_size", "env.camera", "env.shadows"):
                request.pop(key)
        else:
            request["record_frames"] = True
    if "medium" in requests:
        requests["medium"].update({"recipe.noise_std": medium_noise, "recipe.epsilon": medium_eps})
    todo, rows = _pending(task, requests, overwrite)
    if not todo:
        return rows
    if "medium" in todo and medium is None and name not in MEDIUM_NOISE:
        warnings.warn(
            f"the medium tier's epsilon was measured for {', '.join(MEDIUM_NOISE)} only; {name} gets "
            f"noise_std {medium_noise}, epsilon {medium_eps}: check its success rate in the summary "
            f"(make_datasets.py --medium-noise sets another)",
            stacklevel=2,
        )
    try:
        env = make_env(env_cfg)
    except ValueError as err:  # an unknown camera
        raise RecipeError(str(err)) from None
    expert = scripted_expert(task)
    references = _references(env, expert, reference_episodes, seed, progress)
    counts = split_episodes(episodes, len(MIXED_LEVELS))
    recipes = {
        "expert": ([(expert, episodes)], "the scripted expert", {}),
        "medium": (
            [(NoisyPolicy(expert, env.action_space, medium_noise, medium_eps, seed), episodes)],
            f"the scripted expert with noise_std={medium_noise}, epsilon={medium_eps}",
            {"noise_std": medium_noise, "epsilon": medium_eps},
        ),
        "random": ([(RandomPolicy(env.action_space, seed), episodes)], "uniform random actions", {}),
        "mixed": (
            [
                (NoisyPolicy(expert, env.action_space, s, e, seed + k), n)
                for k, ((s, e), n) in enumerate(zip(MIXED_LEVELS, counts))
            ],
            f"the scripted expert at {len(MIXED_LEVELS)} noise levels, very noisy to noise-free",
            {"levels": [{"noise_std": s, "epsilon": e, "episodes": n} for (s, e), n in zip(MIXED_LEVELS, counts)]},
        ),
    }
    try:
        for tier in todo:
            schedule, how, recipe = recipes[tier]
            dataset_id = minari_io.dataset_id_for(task, tier)
            trajectories = iterate_schedule(
                env, schedule, seed, record_frames=frame_info is not None, progress=progress, desc=f"{name} {tier}"
            )
            rows.append(
                _write_tier(
                    trajectories,
                    dataset_id,
                    env,
                    env_cfg,
                    tier,
                    how,
                    {"suite": suite, **recipe},
                    references,
                    reference_episodes,
                    seed,
                    overwrite,
                    frame_info,
                )
            )
    finally:
        env.close()
    return sorted(rows, key=lambda row: list(tiers).index(row["tier"]))


# ---------------------------------------------------------------- SAC runs (D4RL locomotion recipe)


def run_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """{step: file} of a run's `checkpoints/step_*.pt`, with clear errors when there is no run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecipeError(f"run directory {run_dir} does not exist (train one with scripts/train.py)")
    if not (run_dir / "config.yaml").exists():
        raise RecipeError(f"{run_dir} holds no config.yaml: is it a run directory of scripts/train.py?")
    files = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not files:
        raise RecipeError(f"{run_dir / 'checkpoints'} holds no step_*.pt checkpoints")
    return {int(f.stem.removeprefix("step_")): f for f in files}


def eval_returns_from_metrics(run_dir: str | Path) -> dict[int, float]:
    """{step: eval/return_mean} from a run's metrics.csv (the trainer's deterministic evaluations)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {
            int(float(row["step"])): float(row["eval/return_mean"])
            for row in csv.DictReader(f)
            if row.get("eval/return_mean") not in (None, "")
        }


def checkpoint_scores(
    run_dir: str | Path,
    checkpoints: dict[int, Path],
    env: gym.Env,
    select: str = "metrics",
    eval_episodes: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict[int, float]:
    """Mean return of each checkpoint's deterministic policy: from metrics.csv (`select="metrics"`, free; the
    trainer evaluates at the checkpoint steps when eval_every == checkpoint_every), or by `eval_episodes`
    rollouts of every checkpoint (`select="evaluate"`)."""
    if select == "metrics":
        logged = eval_returns_from_metrics(run_dir)
        scores = {step: logged[step] for step in checkpoints if step in logged}
        if max(checkpoints) not in scores:
            raise RecipeError(
                f"metrics.csv of {run_dir} has no eval/return_mean at the final checkpoint step {max(checkpoints)}; "
                "use --select evaluate to evaluate the checkpoints instead"
            )
        return scores
    if select != "evaluate":
        raise RecipeError(f"select must be 'metrics' or 'evaluate', got {select!r}")
    scores = {}
    for step, path in tqdm(checkpoints.items(), desc="evaluate checkpoints", disable=not progress, dynamic_ncols=True):
        policy = load_checkpoint_policy(str(path), env, deterministic=True)
        scores[step] = reference_returns(env, policy, eval_episodes, seed + REFERENCE_SEED_OFFSET)["return_mean"]
    return scores


def pick_medium_step(scores: dict[int, float], fraction: float = 1 / 3, expert_step: int | None = None) -> int:
    """D4RL's early stop: the first checkpoint before the expert one (default: the final one) whose score
    reaches `fraction` of the expert's; if none does, the one closest to that target."""
    expert = max(scores) if expert_step is None else expert_step
    target = fraction * scores[expert]
    earlier = [step for step in sorted(scores) if step < expert] or [expert]
    reached = [step for step in earlier if scores[step] >= target]
    return reached[0] if reached else min(earlier, key=lambda step: abs(scores[step] - target))


def episodes_from_replay(
    state: dict[str, Any], num_envs: int = 1, total_added: int | None = None, obs_dtype: Any = np.float32
) -> list[Trajectory]:
    """Split a `ReplayBuffer.state_dict()` into episodes, oldest first.

    The trainer adds `num_envs` rows per step (row order = env index); once the buffer wrapped, the oldest
    row is at `ptr` and `total_added` (the checkpoint's step) tells which env wrote it. An episode ends
    where the row is terminal or where the next row of the same env does not start from this row's next
    observation (a time-limit truncation: the env was reset; with SAME_STEP autoreset `next_obs` is the true
    final observation). The newest episode of each env, cut by the checkpoint, ends truncated. The buffer
    stores no infos, so `success` is all False.
    """
    size = int(state["size"])
    order = chronological_rows(state).numpy()
    first_global = (total_added - size) if total_added is not None else 0
    stream = (first_global + np.arange(size)) % num_envs  # env index of each chronological row
    obs, next_obs = state["obs"].numpy(), state["next_obs"].numpy()
    action, reward = state["action"].numpy(), state["reward"].numpy()
    terminated = state["terminated"].numpy() > 0.5
    starts: list[tuple[int, np.ndarray]] = []
    for k in range(num_envs):
        rows = order[stream == k]
        if len(rows) == 0:
            continue
        same = next_obs[rows[:-1]] == obs[rows[1:]]  # (n-1, *obs_shape)
        continues = same.reshape(len(same), -1).all(axis=1) if same.size else np.ones(len(same), bool)
        ends = np.flatnonzero(terminated[rows[:-1]] | ~continues)  # last row of each complete episode
        first_positions = np.flatnonzero(stream == k)
        for piece, position in zip(np.split(rows, ends + 1), np.split(first_positions, ends + 1)):
            starts.append((int(position[0]), piece))
    trajectories = []
    for i, (_, rows) in enumerate(sorted(starts, key=lambda item: item[0])):
        term = terminated[rows]
        trajectories.append(
            Trajectory(
                observations=np.concatenate([obs[rows], next_obs[rows[-1:]]]).astype(obs_dtype),
                actions=action[rows].astype(np.float32),
                rewards=reward[rows].astype(np.float64),
                terminations=term,
                truncations=np.arange(len(rows)) == len(rows) - 1 if not term[-1] else np.zeros(len(rows), bool),
                success=np.zeros(len(rows), dtype=bool),
                episode_id=i,
            )
        )
    return trajectories


def sac_run_tiers(
    run_dir: str | Path,
    episodes: int,
    tiers: Sequence[str] = SAC_RUN_TIERS,
    task: str | None = None,
    seed: int = 0,
    medium_fraction: float = 1 / 3,
    medium_step: int | None = None,
    select: str = "metrics",
    eval_episodes: int = 5,
    reference_episodes: int = 10,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
    expert_step: int | str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The D4RL tiers from the SAC run in `run_dir` (trained with `trainer.keep_checkpoints=0` so that every
    checkpoint is kept). The expert is the final checkpoint unless `expert_step` names another, or is "best":
    the checkpoint with the highest score (`select`; scored before anything is built, even when every tier
    exists). Returns one summary row per tier and the checkpoint choice (scores, medium and expert steps)."""
    from omegaconf import OmegaConf

    from embodied_rl.envs import make_env, to_env_config
    from embodied_rl.envs.tasks import UnknownTaskError, resolve_task

    _check_tiers(tiers, SAC_RUN_TIERS)
    _check_ranges(
        episodes=(episodes, ">= 1"),
        reference_episodes=(reference_episodes, ">= 1"),
        seed=(seed, ">= 0"),
        medium_fraction=(medium_fraction, "(0, 1]"),
        **({"eval_episodes": (eval_episodes, ">= 1")} if select == "evaluate" else {}),
    )
    checkpoints = run_checkpoints(run_dir)
    run_cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    run_task = str(run_cfg.env.task)
    try:
        if task is not None and resolve_task(task) != resolve_task(run_task):
            raise RecipeError(f"--task {task} differs from the run's task {run_task} ({run_dir}/config.yaml)")
    except UnknownTaskError as err:
        raise RecipeError(str(err)) from None
    env_cfg = asdict(to_env_config(OmegaConf.to_container(run_cfg.env, resolve=True), seed=seed))
    if env_cfg["obs_mode"] == "state+pixels":  # Dict observations
        raise RecipeError(
            f"{run_dir} was trained on Dict observations (env.obs_mode=state+pixels); "
            "the locomotion tiers need a run trained with env.obs_mode=state"
        )
    final = max(checkpoints)
    scores: dict[int, float] = {}
    if expert_step == "best":  # the scores decide the expert, which names the datasets' recipe: score first
        scoring_env = make_env(env_cfg)
        try:
            scores = checkpoint_scores(run_dir, checkpoints, scoring_env, select, eval_episodes, seed, progress)
        finally:
            scoring_env.close()
        expert_step = max(scores, key=scores.__getitem__)
    elif isinstance(expert_step, str):
        raise RecipeError(f"expert step must be a checkpoint step or 'best', got {expert_step!r}")
    expert = final if expert_step is None else expert_step
    for what, step in (("expert", expert), ("medium", medium_step)):
        if step is not None and step not in checkpoints:
            raise RecipeError(f"no checkpoint at {what} step {step} in {run_dir}; steps: {sorted(checkpoints)}")
    wants_medium = bool(set(MEDIUM_TIERS) & set(tiers))
    if wants_medium and medium_step == expert:
        raise RecipeError(f"medium step {medium_step} is the expert step: the medium tier would be the expert's")
    if wants_medium and medium_step is None and not any(step < expert for step in checkpoints):
        raise RecipeError(
            f"{run_dir} has no checkpoint before the expert step {expert} (checkpoints at steps "
            f"{sorted(checkpoints)}), so the medium tier would be the expert checkpoint again: train the run with "
            "trainer.keep_checkpoints=0 (keeps every checkpoint; the default keeps only the newest 2), or leave the "
            "medium tiers out with --tiers random,expert (recipe: README and docs/datasets.md)"
        )
    requests = {}
    for tier in tiers:  # every tier's reference returns come from the expert checkpoint of this run
        run: dict[str, Any] = {"run_dir": str(Path(run_dir).resolve()), "expert_step": expert}
        if tier in MEDIUM_TIERS and medium_step is not None:
            run["medium_step"] = medium_step
        elif tier in MEDIUM_TIERS:  # the medium step is chosen later, the same way
            run.update(medium_fraction=medium_fraction, select=select)
        count = None if tier == "medium-replay" else episodes  # the replay holds what it holds; medium-expert: per half
        requests[tier] = _request(seed, count, reference_episodes, env_cfg, **run)
    todo, rows = _pending(run_task, requests, overwrite)
    choice: dict[str, Any] = {"run_dir": str(run_dir)}
    if not todo:
        return rows, choice

    env = make_env(env_cfg)
    try:
        needs_medium = set(MEDIUM_TIERS) & set(todo)
        if needs_medium and medium_step is None:
            scores = scores or checkpoint_scores(run_dir, checkpoints, env, select, eval_episodes, seed, progress)
            if expert not in scores:
                raise RecipeError(
                    f"metrics.csv of {run_dir} has no eval/return_mean at the expert step {expert}; "
                    "use --select evaluate to evaluate the checkpoints instead"
                )
            if not any(step < expert for step in scores):  # pick_medium_step would return the expert step
                raise RecipeError(  # there are checkpoints before the expert's (checked above), not evaluated
                    f"metrics.csv of {run_dir} has no eval/return_mean at a checkpoint before the expert step {expert} "
                    f"(checkpoints at steps {sorted(checkpoints)}, returns at {sorted(scores)}), so the medium tier "
                    "would be the expert checkpoint again; use --select evaluate to evaluate the checkpoints or "
                    "--medium-step to pick one, or train the run with trainer.keep_checkpoints=0 (keeps every "
                    "checkpoint) and trainer.eval_every equal to trainer.checkpoint_every (recipe: README and "
                    "docs/datasets.md)"
                )
            medium_step = pick_medium_step(scores, medium_fraction, expert)
        choice.update(
            final_step=final,
            expert_step=expert,
            medium_step=medium_step,
            medium_fraction=medium_fraction,
            select=select,
            scores=scores,
        )
        medium_ckpt = None
        if "medium-replay" in todo:  # read before any rollout: a missing buffer fails at once
            medium_ckpt = load_checkpoint(checkpoints[medium_step])
            if "buffer" not in medium_ckpt:
                raise RecipeError(
                    f"checkpoint {checkpoints[medium_step]} holds no replay buffer (trained with "
                    "trainer.save_replay=false?): medium-replay needs it; leave it out with "
                    "--tiers random,medium,expert"
                )

        expert_det = load_checkpoint_policy(str(checkpoints[expert]), env, deterministic=True, device=device)
        references = _references(env, expert_det, reference_episodes, seed, progress)
        common = {  # the checkpoint choice, as stored in every tier's metadata
            "suite": "sac_run",
            **{key: value for key, value in choice.items() if key != "scores"},
            "run_dir": str(Path(run_dir).resolve()),
            "checkpoint_scores": {str(k): v for k, v in scores.items()},
        }
        name = run_task.split("/")[-1]
        for tier in todo:
            dataset_id = minari_io.dataset_id_for(run_task, tier)
            if tier == "medium-replay":
                state = medium_ckpt["buffer"]
                trajectories = episodes_from_replay(
                    state,
                    int(run_cfg.trainer.get("num_envs", 1)),
                    int(medium_ckpt["step"]),
                    env.observation_space.dtype,
                )
                how = f"the replay buffer of SAC training up to step {medium_step}"
                wrapped = int(state["size"]) < int(medium_ckpt["step"])
                recipe = {"checkpoint": str(checkpoints[medium_step]), "replay_wrapped": wrapped}
                stream = iter(tqdm(trajectories, desc=f"{name} {tier}", unit="ep", disable=not progress))
            else:
                if tier == "random":
                    schedule = [(RandomPolicy(env.action_space, seed), episodes)]
                    how, recipe = "uniform random actions", {}
                else:
                    steps = {"medium": [medium_step], "expert": [expert], "medium-expert": [medium_step, expert]}[tier]
                    schedule = [  # fresh policies with the same seed: the medium half repeats the medium tier
                        (load_checkpoint_policy(str(checkpoints[step]), env, seed=seed, device=device), episodes)
                        for step in steps
                    ]
                    how = " then ".join(f"the SAC checkpoint at step {step}" for step in steps)
                    how += " (stochastic actions)"
                    recipe = {"checkpoint": " ".join(str(checkpoints[step]) for step in steps)}
                stream = iterate_schedule(env, schedule, seed, progress=progress, desc=f"{name} {tier}")
            rows.append(
                _write_tier(
                    stream,
                    dataset_id,
                    env,
                    env_cfg,
                    tier,
                    how,
                    {**common, **recipe},
                    references,
                    reference_episodes,
                    seed,
                    overwrite,
                )
            )
    finally:
        env.close()
    return sorted(rows, key=lambda row: list(tiers).index(row["tier"])), choice


def make_behaviour_policy(
    kind: str,
    env: gym.Env,
    task: str,
    noise_std: float = 0.0,
    epsilon: float = 0.0,
    checkpoint: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
) -> Policy:
    """The policy that generates a dataset: `scripted` (Meta-World expert), `random`, or `checkpoint`
    (sampled actions unless `deterministic`); `noise_std` / `epsilon` grade the scripted and checkpoint
    policies."""
    if kind == "random":
        return RandomPolicy(env.action_space, seed)
    if kind == "scripted":
        base = scripted_expert(task)
    elif kind == "checkpoint":
        base = load_checkpoint_policy(checkpoint, env, deterministic, seed)
    else:
        raise ValueError(f"unknown policy kind {kind!r}; choose one of {', '.join(POLICY_KINDS)}")
    if noise_std == 0 and epsilon == 0:
        return base
    return NoisyPolicy(base, env.action_space, noise_std, epsilon, seed)

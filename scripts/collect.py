"""Collect a local Minari dataset: a Meta-World scripted policy with graded noise, a random policy, or
a trained checkpoint of scripts/train.py; optionally with rendered frames.

    python scripts/collect.py env.task=metaworld/drawer-open-v3 episodes=100
    python scripts/collect.py policy.noise_std=0.5 policy.epsilon=0.1 record_frames=true env.image_size=64
    python scripts/collect.py policy.kind=random dataset.root=./my_datasets overwrite=true
    python scripts/collect.py policy.kind=checkpoint policy.checkpoint=runs/sac_mujoco/mujoco/Hopper-v5/seed1 \
        reference.max_score=3000

With policy.kind=checkpoint the env settings come from the run's config.yaml; `env.<key>=...` on the
command line still wins (the seed is collect's own).

All tiers of a graded benchmark (expert / medium / random / mixed, or the D4RL tiers of a SAC run) are
built in one command by scripts/make_datasets.py.

The dataset opens with `embodied_rl.data.load_trajectories(id)` or `minari.load_dataset(id)` (import
embodied_rl.envs first so that `dataset.recover_environment()` finds the env).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from embodied_rl.data import minari_io
from embodied_rl.data.collection import (
    REFERENCE_SEED_OFFSET,
    collect_dataset,
    dataset_name_for,
    reference_returns,
)
from embodied_rl.data.policies import RandomPolicy, scripted_expert
from embodied_rl.envs import make_env
from embodied_rl.pipelines.offline_datasets import make_behaviour_policy
from embodied_rl.threads import set_threads
from embodied_rl.trainers.loading import mismatch_message
from embodied_rl.validation import check_ranges, check_types


def reference_scores(cfg: DictConfig, env: Any) -> tuple[float, float | None, dict[str, Any]]:
    """(ref_min_score, ref_max_score, details): mean returns of a random policy and of the noise-free
    scripted expert over `reference.episodes` rollouts, unless given in the config."""
    ref, seed, details = cfg.reference, cfg.seed + REFERENCE_SEED_OFFSET, {}
    ref_min, ref_max = ref.min_score, ref.max_score
    if ref_min is None:
        random_policy = RandomPolicy(env.action_space, seed=seed)
        details["random"] = reference_returns(env, random_policy, ref.episodes, seed, cfg.progress, "ref random")
        ref_min = details["random"]["return_mean"]
    if ref_max is None:
        try:
            expert = scripted_expert(cfg.env.task)
        except ValueError as err:  # no scripted expert for this task (e.g. locomotion)
            print(f"[collect] no expert reference ({err}); set reference.max_score to give one")
        else:
            details["expert"] = reference_returns(env, expert, ref.episodes, seed, cfg.progress, "ref expert")
            ref_max = details["expert"]["return_mean"]
    return float(ref_min), None if ref_max is None else float(ref_max), details


def env_from_run(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The env block of the checkpoint's run (its config.yaml), with collect's seed and the `env.<key>`
    overrides of the command line on top."""
    from embodied_rl.trainers import load_run_config

    if cfg.policy.checkpoint is None:
        raise ValueError("policy.kind=checkpoint needs policy.checkpoint: a run directory or a .pt file")
    env_cfg = OmegaConf.to_container(load_run_config(cfg.policy.checkpoint).env, resolve=True)
    ours = OmegaConf.to_container(cfg.env, resolve=True)
    keys = {o.lstrip("+~").split("=")[0] for o in overrides}
    for key in ["seed", *(k.split(".")[1] for k in keys if k.startswith("env."))]:
        env_cfg[key] = ours.get(key)
    return env_cfg


# Types and ranges of the settings whose misuse would not fail on its own, or only after the rollouts
# (`overwrite=no` would count as true; no reference episodes would store NaN reference returns).
SETTING_TYPES = {
    "seed": "int",
    "episodes": "int",
    "record_frames": "bool",
    "overwrite": "bool",
    "progress": "bool",
    "policy.deterministic": "bool",
    "reference.episodes": "int",
}
SETTING_RANGES = {"seed": ">= 0", "episodes": ">= 1", "reference.episodes": ">= 1"}


def collect(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Roll out the behaviour policy and write the dataset; `overrides` are the command line's `key=value`s."""
    settings = {key: OmegaConf.select(cfg, key) for key in SETTING_TYPES}
    check_types("collect settings", settings, SETTING_TYPES)
    check_ranges("collect settings", settings, SETTING_RANGES)
    print(f"[collect] {set_threads(cfg.threads)}")  # auto or N, else a ValueError
    if cfg.dataset.root is not None:  # Minari reads this variable each time it touches the disk
        os.environ["MINARI_DATASETS_PATH"] = os.path.abspath(cfg.dataset.root)

    policy_cfg = cfg.policy
    if policy_cfg.kind == "checkpoint":
        with open_dict(cfg):
            cfg.env = env_from_run(cfg, overrides)
        print(f"[collect] env of the run's config.yaml (+ env.* overrides): {cfg.env.task}, {cfg.env.obs_mode}")
    name = cfg.dataset.name or dataset_name_for(
        policy_cfg.kind, policy_cfg.noise_std, policy_cfg.epsilon, cfg.record_frames, cfg.env.obs_mode
    )
    dataset_id = cfg.dataset.id or minari_io.dataset_id_for(cfg.env.task, name, cfg.dataset.version)
    minari_io.check_writable(dataset_id, cfg.overwrite)  # fail before any rollout
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env = make_env(env_cfg)
    try:
        policy = make_behaviour_policy(
            policy_cfg.kind,
            env,
            cfg.env.task,
            policy_cfg.noise_std,
            policy_cfg.epsilon,
            policy_cfg.checkpoint,
            seed=cfg.seed,
            deterministic=policy_cfg.deterministic,
        )
    except RuntimeError as err:  # a checkpoint that does not fit the env
        raise ValueError(mismatch_message(err, env)) from err
    start = time.time()
    ref_min, ref_max, ref_details = reference_scores(cfg, env)
    metadata: dict[str, Any] = {
        "ref_min_score": ref_min,
        "num_episodes_average_score": int(cfg.reference.episodes),
        "embodied_rl": {
            "env": env_cfg,
            "policy": OmegaConf.to_container(policy_cfg, resolve=True),
            "seed": int(cfg.seed),
            "record_frames": bool(cfg.record_frames),
            "reference": ref_details,
        },
    }
    if ref_max is not None:
        metadata["ref_max_score"] = ref_max

    policy_text = f"{policy_cfg.kind} policy (noise_std={policy_cfg.noise_std}, epsilon={policy_cfg.epsilon})"
    dataset, stats = collect_dataset(
        env,
        policy,
        dataset_id,
        cfg.episodes,
        seed=cfg.seed,
        record_frames=cfg.record_frames,
        metadata=metadata,
        algorithm_name=policy_text,
        overwrite=cfg.overwrite,
        flush_every=cfg.dataset.flush_every,
        progress=cfg.progress,
    )
    env.close()
    ref_text = f"random {ref_min:.1f}" + ("" if ref_max is None else f", expert {ref_max:.1f}")
    description = (
        f"{stats['episodes']} episodes of a {policy_text} on {cfg.env.task} (obs_mode={cfg.env.obs_mode}); "
        f"success rate {stats['success_rate']:.2f}, "
        f"return {stats['return_mean']:.1f} +- {stats['return_std']:.1f}; "
        f"reference returns {ref_text}"
    )
    if cfg.record_frames:
        description += f"; frames {cfg.env.image_size}x{cfg.env.image_size} in infos['frame']"
    minari_io.update_metadata(dataset, {"description": description})
    print(f"[collect] {description}")
    print(f"[collect] wrote {dataset_id} to {dataset.storage.data_path} in {time.time() - start:.1f}s")


@hydra.main(version_base="1.3", config_path="../configs", config_name="collect")
def main(cfg: DictConfig) -> None:
    try:
        collect(cfg, HydraConfig.get().overrides.task)
    except KeyboardInterrupt:
        print("\n[collect] interrupted: the partly written dataset was removed", file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, FileNotFoundError) as err:  # an existing or malformed id, no run, a misfit checkpoint
        print(f"[collect] error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

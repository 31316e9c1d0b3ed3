"""Rolling out behaviour policies into trajectories and writing them as a local Minari dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from numbers import Number
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from tqdm import tqdm

from embodied_rl.data import minari_io
from embodied_rl.data.minari_io import FRAME_KEY, SUCCESS_KEY
from embodied_rl.data.policies import Policy
from embodied_rl.data.trajectory import Trajectory

FrameFn = Callable[[gym.Env, Any], np.ndarray]
REFERENCE_SEED_OFFSET = 1_000_000  # reference rollouts never reuse a dataset's episode seeds


def render_frame(env: gym.Env, obs: Any) -> np.ndarray:
    """The current frame (H, W, 3) uint8: the newest frame of a pixel observation (frame stacks are oldest
    first), else `env.render()` (our envs always render rgb arrays at `image_size`)."""
    pixels = obs.get("pixels") if isinstance(obs, dict) else obs
    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3:
        return pixels[..., -3:]
    frame = env.render()
    if frame is None:
        raise RuntimeError("env.render() returned None: make the env with render_mode='rgb_array'")
    return np.asarray(frame, dtype=np.uint8)


def _stack(observations: list[Any]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def _scalar_infos(step_infos: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-step arrays for the scalar info keys present at every step (besides success and frames)."""
    keys = set.intersection(*(set(info) for info in step_infos)) - {SUCCESS_KEY, FRAME_KEY}
    scalar = [k for k in sorted(keys) if all(isinstance(i[k], (Number, np.number, np.bool_)) for i in step_infos)]
    return {k: np.asarray([info[k] for info in step_infos]) for k in scalar if not k.startswith("_")}


def rollout(
    env: gym.Env,
    policy: Policy,
    seed: int | None = None,
    record_frames: bool = False,
    frame_fn: FrameFn = render_frame,
    max_steps: int | None = None,
    episode_id: int = 0,
) -> Trajectory:
    """One episode, until the env terminates or truncates (or `max_steps`, counted as truncation)."""
    obs, info = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations, success, infos = [obs], [], [], [], [], [], []
    frames = [frame_fn(env, obs)] if record_frames else []
    done = False
    while not done:
        action = policy(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        truncated = truncated or (max_steps is not None and len(actions) + 1 >= max_steps)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        success.append(bool(info.get(SUCCESS_KEY, False)))
        infos.append(info)
        if record_frames:
            frames.append(frame_fn(env, obs))
        done = terminated or truncated
    return Trajectory(
        observations=_stack(observations),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations),
        truncations=np.asarray(truncations),
        success=np.asarray(success),
        frames=np.stack(frames) if record_frames else None,
        infos=_scalar_infos(infos),
        episode_id=episode_id,
        seed=seed,
    )


def iterate_rollouts(
    env: gym.Env,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    record_frames: bool = False,
    frame_fn: FrameFn = render_frame,
    progress: bool = True,
    desc: str = "collect",
) -> Iterator[Trajectory]:
    """`episodes` rollouts with seeds `seed, seed+1, ...`, showing a progress bar of episodes done."""
    return iterate_schedule(env, [(policy, episodes)], seed, record_frames, frame_fn, progress, desc)


def iterate_schedule(
    env: gym.Env,
    schedule: Sequence[tuple[Policy, int]],
    seed: int = 0,
    record_frames: bool = False,
    frame_fn: FrameFn = render_frame,
    progress: bool = True,
    desc: str = "collect",
) -> Iterator[Trajectory]:
    """The episodes of each (policy, count) of `schedule` in turn, episode i reset with seed + i, under one progress
    bar of episodes done (with the success rate and mean return so far)."""
    total = sum(count for _, count in schedule)
    successes, returns, i = 0, [], 0
    with tqdm(total=total, desc=desc, unit="ep", disable=not progress, dynamic_ncols=True) as bar:
        for policy, count in schedule:
            for _ in range(count):
                trajectory = rollout(env, policy, seed + i, record_frames, frame_fn, episode_id=i)
                i += 1
                successes += trajectory.succeeded
                returns.append(trajectory.episode_return)
                bar.update(1)
                bar.set_postfix(success=f"{successes / i:.2f}", ret=f"{np.mean(returns):.1f}")
                yield trajectory


def summarize(returns: list[float], successes: list[bool]) -> dict[str, float]:
    return {
        "episodes": len(returns),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "success_rate": float(np.mean(successes)),
    }


def reference_returns(
    env: gym.Env, policy: Policy, episodes: int, seed: int, progress: bool = False, desc: str = "reference"
) -> dict[str, float]:
    """Mean return and success of `policy` over `episodes` rollouts (for normalised scores)."""
    if episodes < 1:  # a mean over no episodes would store NaN reference returns
        raise ValueError(f"reference episodes must be >= 1, got {episodes}")
    trajectories = list(iterate_rollouts(env, policy, episodes, seed, progress=progress, desc=desc))
    return summarize([t.episode_return for t in trajectories], [t.succeeded for t in trajectories])


def collect_dataset(
    env: gym.Env,
    policy: Policy,
    dataset_id: str,
    episodes: int,
    seed: int = 0,
    record_frames: bool = False,
    frame_fn: FrameFn = render_frame,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    algorithm_name: str | None = None,
    overwrite: bool = False,
    flush_every: int = 50,
    progress: bool = True,
) -> tuple[minari.MinariDataset, dict[str, float]]:
    """Roll out `episodes` episodes and write them to the local Minari dataset `dataset_id`, `flush_every`
    episodes at a time (so frames never pile up in memory). Returns the dataset and its statistics, which
    are also stored in its metadata under `embodied_rl.collection`. Nothing is left behind on failure."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    minari_io.check_writable(dataset_id, overwrite)  # fail before collecting, not after
    trajectories = iterate_rollouts(env, policy, episodes, seed, record_frames, frame_fn, progress)
    return write_trajectories(
        trajectories, dataset_id, env, metadata, description, algorithm_name, overwrite, flush_every
    )


def write_trajectories(
    trajectories: Iterable[Trajectory],
    dataset_id: str,
    env: gym.Env,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    algorithm_name: str | None = None,
    overwrite: bool = False,
    flush_every: int = 50,
) -> tuple[minari.MinariDataset, dict[str, float]]:
    """Write a stream of trajectories (e.g. rollouts made on the fly) to the local Minari dataset
    `dataset_id`, `flush_every` at a time. Returns the dataset and its statistics (also stored in its
    metadata under `embodied_rl.collection`). Nothing is left behind on an exception; a killed process leaves
    a dataset marked incomplete (`minari_io.INCOMPLETE_KEY`), which loading refuses."""
    minari_io.check_writable(dataset_id, overwrite)
    dataset, chunk, returns, successes, steps = None, [], [], [], 0

    def flush() -> None:
        nonlocal dataset
        if dataset is None:
            dataset = minari_io.write_dataset(
                chunk,
                dataset_id,
                env,
                description=description,
                algorithm_name=algorithm_name,
                overwrite=overwrite,
                jpeg_encoding=False,
                metadata={minari_io.INCOMPLETE_KEY: True},  # cleared once every chunk is written
            )
        else:
            minari_io.append_trajectories(dataset, chunk)
        chunk.clear()

    try:
        for trajectory in trajectories:
            chunk.append(trajectory)
            returns.append(trajectory.episode_return)
            successes.append(trajectory.succeeded)
            steps += len(trajectory)
            if len(chunk) == flush_every:
                flush()
        if chunk:
            flush()
        if dataset is None:
            raise ValueError(f"no trajectories to write to {dataset_id!r}")
        stats = {**summarize(returns, successes), "steps": steps}
        extra = {**(metadata or {}), minari_io.INCOMPLETE_KEY: False}
        extra.setdefault("embodied_rl", {})["collection"] = stats
        minari_io.update_metadata(dataset, extra)
    except BaseException:
        if dataset is not None:  # a partial dataset of ours; a failed first write cleans up itself
            minari_io.delete_dataset(dataset_id)
        raise
    return dataset, stats


def dataset_name_for(
    kind: str, noise_std: float = 0.0, epsilon: float = 0.0, frames: bool = False, obs_mode: str = "state"
) -> str:
    """Default dataset name: `expert`, `random`, `scripted-noise30-eps10`, `checkpoint-noise10`, ... with
    noise levels in percent (Minari names allow no dots), then `-pixels` / `-state-pixels` for pixel
    observation modes and `-frames` when frames are stored."""
    if kind == "random":
        name = "random"
    else:
        name = "expert" if kind == "scripted" and noise_std == 0 and epsilon == 0 else kind
        if noise_std > 0:
            name += f"-noise{round(noise_std * 100)}"
        if epsilon > 0:
            name += f"-eps{round(epsilon * 100)}"
    if obs_mode != "state":
        name += "-" + obs_mode.replace("+", "-")
    return name + ("-frames" if frames else "")

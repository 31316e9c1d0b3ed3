"""Behaviour policies that generate datasets: Meta-World's scripted experts with graded noise and uniform
random actions (trained checkpoints of `scripts/train.py`: `embodied_rl.trainers.loading.load_checkpoint_policy`).

A behaviour policy maps one observation and the env's info to one action: `policy(obs, info)`. The info
carries the raw state (`info["state"]`), which the scripted experts read under any observation mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

Policy = Callable[[Any, dict[str, Any]], np.ndarray]


class RandomPolicy:
    """Uniform actions in a Box action space, from its own seeded generator."""

    def __init__(self, action_space: gym.spaces.Box, seed: int | None = None):
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Any, info: dict[str, Any] | None = None) -> np.ndarray:
        space = self.action_space
        return self.rng.uniform(space.low, space.high).astype(space.dtype)


class NoisyPolicy:
    """Graded noise around a base policy: with probability `epsilon` a uniform random action, otherwise
    the base action plus Gaussian noise of std `noise_std`, clipped to the action bounds."""

    def __init__(
        self,
        base: Policy,
        action_space: gym.spaces.Box,
        noise_std: float = 0.0,
        epsilon: float = 0.0,
        seed: int | None = None,
    ):
        if noise_std < 0 or not 0 <= epsilon <= 1:
            raise ValueError(f"need noise_std >= 0 and 0 <= epsilon <= 1, got {noise_std}, {epsilon}")
        self.base, self.action_space = base, action_space
        self.noise_std, self.epsilon = noise_std, epsilon
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Any, info: dict[str, Any] | None = None) -> np.ndarray:
        space = self.action_space
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return self.rng.uniform(space.low, space.high).astype(space.dtype)
        action = np.asarray(self.base(obs, info or {}), dtype=np.float64)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, space.low, space.high).astype(space.dtype)


def state_of(obs: Any, info: dict[str, Any]) -> np.ndarray:
    """The raw state a scripted policy reads: `info["state"]` (our envs, every obs mode), else the
    observation's `state` entry, else the (state) observation itself."""
    if "state" in info:
        return info["state"]
    if isinstance(obs, dict):
        if "state" not in obs:
            raise ValueError(f"scripted policies need a state observation; got keys {list(obs)}")
        return obs["state"]
    if np.asarray(obs).dtype == np.uint8:
        raise ValueError("scripted policies need a state observation; use env.obs_mode=state or state+pixels")
    return obs


def scripted_expert(task: str) -> Policy:
    """Meta-World's scripted v3 policy for `task` ("metaworld/drawer-open-v3") on `state_of(obs, info)`."""
    from embodied_rl.envs import scripted_policy

    expert = scripted_policy(task)
    return lambda obs, info: expert(state_of(obs, info))

"""`LocomotionEnv`: a gymnasium MuJoCo v5 robot (HalfCheetah, Hopper, Walker2d, Ant, Humanoid)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .base import SimulatorEnv
from .tasks import DEFAULT_CAMERA, MUJOCO


class LocomotionEnv(SimulatorEnv):
    """A gymnasium MuJoCo task without its time limit: float32 state, actions in [-1, 1].

    Actions are clipped to [-1, 1] (MuJoCo would clamp the control anyway, but gymnasium's control cost would
    charge the unclipped value), then mapped linearly onto the robot's control range when it is not [-1, 1]
    (Humanoid: [-0.4, 0.4]).
    ``info["success"]`` is always False: locomotion has no success criterion.
    """

    def __init__(
        self,
        task: str,
        camera: str | None = None,
        image_size: int = 64,
        shadows: bool = True,
        seed: int | None = None,
    ):
        sim = gym.make(task, disable_env_checker=True).unwrapped  # no time limit or checker wrappers
        low, high = sim.action_space.low, sim.action_space.high
        self._rescale_actions = not (np.all(low == -1.0) and np.all(high == 1.0))
        self._action_centre = (high + low) / 2.0
        self._action_half_range = (high - low) / 2.0
        observation_space = gym.spaces.Box(-np.inf, np.inf, sim.observation_space.shape, np.float32)
        camera = camera or DEFAULT_CAMERA[MUJOCO]
        super().__init__(sim, observation_space, camera, image_size, shadows, seed)
        self.task = task

    def reset_simulator(self) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.sim.reset()
        return obs.astype(np.float32), info

    def step(self, action: np.ndarray):
        action = np.clip(action, -1.0, 1.0)
        if self._rescale_actions:
            action = self._action_centre + self._action_half_range * action
        obs, reward, terminated, truncated, info = self.sim.step(action)
        state = obs.astype(np.float32)
        info["success"] = False
        info["state"] = state
        return state, float(reward), terminated, truncated, info

"""`SimulatorEnv`: what every base env shares, whichever library simulates it.

A base env owns one library env (``self.sim``: Meta-World's SawyerXYZEnv, a gymnasium MuJoCo env, or an
adapter around a dm_control suite environment) and gives it our conventions: float32 state observations,
actions in [-1, 1], ``info["success"]`` and ``info["state"]`` (the current raw state), one generator seeded by
``reset(seed=...)`` that drives all of the task's randomness, and ``render()`` returning an
(image_size, image_size, 3) uint8 frame from ``camera``. ``model``, ``data``, ``camera`` and ``image_size``
are public, so a wrapper (the distractors) can render too.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from .rendering import close_renderer, open_renderer, turn_fixed_cameras_upright


class SimulatorEnv(gym.Env):
    """Base class; subclasses build ``sim`` and implement ``step`` and ``reset_simulator``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    # Roll upside-down fixed world cameras upright (Meta-World's mujoco-py-era ones); a suite whose cameras
    # are all meant as they are (DMC's top-down views) turns it off.
    upright_fixed_cameras = True

    def __init__(
        self,
        sim: gym.Env,
        observation_space: gym.spaces.Box,
        camera: str,
        image_size: int,
        shadows: bool = True,
        seed: int | None = None,
    ):
        self.sim = sim
        self.model = sim.model
        self.data = sim.data
        self.observation_space = observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, sim.action_space.shape, np.float32)
        self.render_mode = "rgb_array"
        self.metadata = {**self.metadata, "render_fps": round(1.0 / sim.dt)}
        self.camera = self._check_camera(camera)
        self.image_size = image_size
        self.shadows = shadows
        self._first_reset_seed = seed
        self._renderer = None
        if self.upright_fixed_cameras and turn_fixed_cameras_upright(self.model):
            mujoco.mj_forward(self.model, self.data)  # refresh the camera poses for a render before reset

    def _check_camera(self, camera: str) -> str:
        names = [self.model.camera(i).name for i in range(self.model.ncam)]
        if camera not in names:
            raise ValueError(f"unknown camera {camera!r} for this task; its cameras are {names}")
        return camera

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset; the first reset without a seed uses the constructor's ``seed``."""
        if seed is None:
            seed = self._first_reset_seed
        self._first_reset_seed = None
        super().reset(seed=seed)
        self.sim.np_random = self.np_random  # the library draws goals/noise from our generator
        state, info = self.reset_simulator()
        info["success"] = False
        info["state"] = state
        return state, info

    def reset_simulator(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset ``sim`` (its generator is already ours) and return (float32 state, info)."""
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """The current frame from ``camera``: uint8 (image_size, image_size, 3), upright."""
        if self._renderer is None:
            self._renderer = open_renderer(self.model, self.image_size, self.image_size, self.shadows)
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        self._close_renderer()
        self.sim.close()

    def _close_renderer(self) -> None:
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            close_renderer(renderer)

    def __del__(self):
        with contextlib.suppress(Exception):  # at interpreter exit the GL library may already be gone
            self._close_renderer()

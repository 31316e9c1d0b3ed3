"""`DMCEnv`: a DeepMind Control Suite task (``dm_control.suite``) as a gymnasium env of this package."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from dm_control import suite

from .base import SimulatorEnv
from .tasks import DMC, dmc_domain_and_task

# Camera 0 of every domain, as Dreamer and RePo render DMC; quadruped's camera 0 is a distant global view, so
# (like Dreamer and RePo) its tracking camera 2 instead.
DMC_CAMERA_ID = {"quadruped": 2}


def _quadruped_sensor_names(self, *sensor_types):
    """dm_control 1.0.28's ``quadruped.Physics._get_sensor_names`` with ``np.isin`` for ``np.in1d`` (removed in
    numpy 2.4); dm_control's newer releases need a newer mujoco than Meta-World allows."""
    try:
        return self._sensor_types_to_names[sensor_types]
    except KeyError:
        [sensor_ids] = np.where(np.isin(self.model.sensor_type, sensor_types))
        names = [self.model.id2name(sensor_id, "sensor") for sensor_id in sensor_ids]
        self._sensor_types_to_names[sensor_types] = names
        return names


def _patch_for_numpy() -> None:
    if not hasattr(np, "in1d"):
        from dm_control.suite import quadruped

        quadruped.Physics._get_sensor_names = _quadruped_sensor_names


class DMCSimulator:
    """What `SimulatorEnv` needs of a library env (``model``, ``data``, ``action_space``, ``dt``, ``close``,
    ``np_random``), for a ``dm_control.suite`` environment ``env``.

    ``model`` and ``data`` are the raw ``mujoco.MjModel`` / ``mujoco.MjData`` behind dm_control's physics
    (``physics.model.ptr``, ``physics.data.ptr``), stepped in place by dm_control, so our renderers and the
    distractors see every step.
    """

    def __init__(self, env):
        self.env = env
        self.model = env.physics.model.ptr
        self.data = env.physics.data.ptr
        spec = env.action_spec()
        self.action_space = gym.spaces.Box(
            np.asarray(spec.minimum, np.float32) * np.ones(spec.shape, np.float32),
            np.asarray(spec.maximum, np.float32) * np.ones(spec.shape, np.float32),
            dtype=np.float32,
        )
        self.dt = float(env.control_timestep())
        self.np_random: np.random.Generator | None = None  # set by SimulatorEnv.reset; DMCEnv reseeds the task

    def close(self) -> None:
        self.env.close()


def flatten_observation(observation: dict[str, Any]) -> np.ndarray:
    """dm_control's observation dict (ordered by the task) as one float32 vector, scalars included."""
    return np.concatenate([np.asarray(value, np.float32).ravel() for value in observation.values()])


class DMCEnv(SimulatorEnv):
    """A DMC task ("walker-walk", "ball_in_cup-catch", ...) without dm_control's time limit (ours replaces it).

    State: the task's observation dict flattened in its own order to float32 (walker: orientations 14, height
    1, velocity 9). One step is one DMC control step (``physics`` sub-steps included: walker 0.025 s, cheetah
    0.01 s); ``make_env``'s ``action_repeat`` repeats it. Actions are clipped to [-1, 1] and mapped linearly onto
    the action spec when it is not [-1, 1] (quadruped's [-1, 1.1]). The reward is DMC's, in [0, 1] per step
    (0 on a step where dm_control gives None). DMC has no success criterion: ``info["success"]`` is always
    False. No DMC task in this list terminates by itself; if one did, a zero discount would be
    ``terminated`` and any other end ``truncated``. ``reset(seed=s)`` reseeds the task's RandomState (initial
    poses, targets) from our generator, so episodes reproduce from the seed.
    """

    suite = DMC  # the distractors' suite profile (distractors.DMC_PROFILE)
    upright_fixed_cameras = False  # DMC's fixed cameras (top-down reacher, side cartpole) are meant as they are

    def __init__(
        self,
        task: str,
        camera: str | None = None,
        image_size: int = 64,
        shadows: bool = True,
        seed: int | None = None,
    ):
        domain, name = dmc_domain_and_task(task)
        if domain == "quadruped":
            _patch_for_numpy()
        # The task's own time limit is infinite: our TimeLimit truncates (1000 steps / action_repeat by default).
        env = suite.load(domain, name, task_kwargs={"random": 0, "time_limit": float("inf")})
        sim = DMCSimulator(env)
        spec = env.action_spec()
        low, high = (np.broadcast_to(bound, spec.shape).astype(np.float64) for bound in (spec.minimum, spec.maximum))
        self._rescale_actions = not (np.all(low == -1.0) and np.all(high == 1.0))
        self._action_centre = (high + low) / 2.0
        self._action_half_range = (high - low) / 2.0
        size = sum(int(np.prod(spec.shape)) for spec in env.observation_spec().values())
        observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        model = sim.model
        camera = camera or model.camera(DMC_CAMERA_ID.get(domain, 0)).name
        super().__init__(sim, observation_space, camera, image_size, shadows, seed)
        self.task = task
        self.domain = domain

    def reset_simulator(self) -> tuple[np.ndarray, dict[str, Any]]:
        # dm_control draws the episode's initial state from task.random (a RandomState): seed it from ours.
        self.sim.env.task._random = np.random.RandomState(int(self.np_random.integers(2**32)))
        time_step = self.sim.env.reset()
        return flatten_observation(time_step.observation), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        if self._rescale_actions:
            action = self._action_centre + self._action_half_range * action
        time_step = self.sim.env.step(action)
        state = flatten_observation(time_step.observation)
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        info = {"success": False, "state": state}
        reward = 0.0 if time_step.reward is None else float(time_step.reward)
        return state, reward, terminated, truncated, info

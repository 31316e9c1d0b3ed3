"""The wrappers `make_env` stacks on a base env, each one lean enough to cost ~1 us per step.

Order, innermost first: base env -> [DistractorWrapper] -> ActionRepeat -> PixelObservation -> FrameStack
-> TimeLimit -> the caller's ``wrappers`` (`make_env(..., wrappers=[...])`, e.g. `RewardFunction`). Pixels are
rendered once per agent step (after the repeats), only through ``self.env.render()``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times: rewards summed, stops early at termination or truncation,
    ``info["success"]`` true if any repeated step succeeded; the other infos are the last step's."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat
        self.metadata = {**env.metadata, "render_fps": env.metadata.get("render_fps", 30) / repeat}

    def step(self, action):
        total_reward, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += reward
            success = success or info["success"]
            if terminated or truncated:
                break
        info["success"] = success
        return obs, total_reward, terminated, truncated, info


class PixelObservation(gym.ObservationWrapper):
    """Observe the rendered frame, uint8 (H, W, 3), or with ``keep_state`` a Dict of "state" and "pixels"."""

    def __init__(self, env: gym.Env, image_size: int, keep_state: bool = False):
        super().__init__(env)
        self.keep_state = keep_state
        pixels = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        if keep_state:
            self.observation_space = gym.spaces.Dict({"state": env.observation_space, "pixels": pixels})
        else:
            self.observation_space = pixels

    def observation(self, observation: np.ndarray):
        pixels = self.env.render()
        return {"state": observation, "pixels": pixels} if self.keep_state else pixels


class FrameStack(gym.Wrapper):
    """Concatenate the last ``num_frames`` observations along their last axis, oldest first.

    Pixels (H, W, 3) become (H, W, 3 * num_frames), states (D,) become (num_frames * D,); a Dict observation
    is stacked per key. After reset the first observation fills every slot.
    """

    def __init__(self, env: gym.Env, num_frames: int):
        super().__init__(env)
        self.num_frames = num_frames
        self._frames: deque = deque(maxlen=num_frames)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            stacked = {key: self._stacked_box(box) for key, box in space.items()}
            self.observation_space = gym.spaces.Dict(stacked)
        else:
            self.observation_space = self._stacked_box(space)

    def _stacked_box(self, box: gym.spaces.Box) -> gym.spaces.Box:
        low = np.concatenate([box.low] * self.num_frames, axis=-1)
        high = np.concatenate([box.high] * self.num_frames, axis=-1)
        return gym.spaces.Box(low, high, dtype=box.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames.extend([obs] * self.num_frames)
        return self._stacked(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs)
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self):
        frames = self._frames
        if isinstance(frames[0], dict):
            return {key: np.concatenate([frame[key] for frame in frames], axis=-1) for key in frames[0]}
        return np.concatenate(frames, axis=-1)


class TimeLimit(gym.Wrapper):
    """Truncate after ``max_steps`` steps, and refuse ``step()`` before reset or after the episode ended.

    Stepping an ended episode raises `gymnasium.error.ResetNeeded`, so no library's own "reset first"
    error (e.g. Meta-World's ValueError after its 500 steps) ever reaches the user.
    """

    def __init__(self, env: gym.Env, max_steps: int):
        super().__init__(env)
        self.max_steps = max_steps
        self.elapsed_steps = 0
        self._episode_over = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.elapsed_steps = 0
        self._episode_over = False
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        if self._episode_over:
            raise gym.error.ResetNeeded(
                "step() called before reset() or after the episode ended (terminated or truncated); call reset() first."
            )
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.elapsed_steps += 1
        truncated = truncated or self.elapsed_steps >= self.max_steps
        self._episode_over = terminated or truncated
        return obs, reward, terminated, truncated, info


class RewardFunction(gym.Wrapper):
    """Replace the reward by ``fn(obs, action, next_obs, info)`` (a learned or generated reward, online).

    ``obs`` is the observation the action was taken in, ``next_obs`` and ``info`` the step's; ``info["env_reward"]``
    holds the wrapped env's own reward (already set when ``fn`` is called). The result is cast to float. Pass
    it to the factory as ``make_env(task, wrappers=[functools.partial(RewardFunction, fn=reward)])``.
    """

    def __init__(self, env: gym.Env, fn: Callable[[Any, Any, Any, dict[str, Any]], float]):
        super().__init__(env)
        self.fn = fn
        self._obs = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action):
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        info["env_reward"] = reward
        reward = float(self.fn(self._obs, action, next_obs, info))
        self._obs = next_obs
        return next_obs, reward, terminated, truncated, info

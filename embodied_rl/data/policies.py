"""Behaviour policies that generate datasets: Meta-World's scripted experts with graded noise, uniform
random actions, and trained checkpoints of `scripts/train.py`.

A behaviour policy maps one observation and the env's info to one action: `policy(obs, info)`. The info
carries the raw state (`info["state"]`), which the scripted experts read under any observation mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

Policy = Callable[[Any, dict[str, Any]], np.ndarray]
POLICY_KINDS = ("scripted", "random", "checkpoint")


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


class CheckpointPolicy:
    """A trained agent as a behaviour policy: `agent.act(obs, deterministic)`.

    Stochastic actions (the default, as D4RL's SAC datasets; Fu et al. 2020) are sampled with torch's
    global RNG (CPU, and the agent's CUDA device if it has one) inside a fork seeded by `seed`, so a dataset
    is reproducible and the caller's torch RNG is untouched.
    """

    def __init__(self, agent: Any, deterministic: bool = False, seed: int | None = None):
        import torch

        self.agent, self.deterministic = agent, deterministic
        self._rng_state = _seeded_state(torch.device("cpu"), seed)
        self._cuda = _cuda_index(getattr(agent, "device", "cpu"))  # None for a CPU agent
        self._cuda_state = None if self._cuda is None else _seeded_state(torch.device("cuda", self._cuda), seed)

    def __call__(self, obs: Any, info: dict[str, Any] | None = None) -> np.ndarray:
        if self.deterministic:
            return self.agent.act(obs, deterministic=True)
        import torch

        cuda = [] if self._cuda is None else [self._cuda]
        with torch.random.fork_rng(devices=cuda):
            torch.set_rng_state(self._rng_state)
            if cuda:
                torch.cuda.set_rng_state(self._cuda_state, self._cuda)
            action = self.agent.act(obs, deterministic=False)
            self._rng_state = torch.get_rng_state()
            if cuda:
                self._cuda_state = torch.cuda.get_rng_state(self._cuda)
        return action


def _seeded_state(device: Any, seed: int | None) -> Any:
    """The state of a fresh generator on `device`, seeded by `seed` (or randomly)."""
    import torch

    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator.get_state()


def _cuda_index(device: Any) -> int | None:
    """The CUDA device index of `device` ("auto": CUDA when available), or None for a CPU device."""
    import torch

    from embodied_rl.devices import resolve_device

    device = resolve_device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.current_device() if device.index is None else device.index


def load_checkpoint_policy(
    path: str | None, env: gym.Env, deterministic: bool = False, seed: int | None = None, device: str = "cpu"
) -> CheckpointPolicy:
    """The agent saved by `scripts/train.py` at `path` (a run directory: its `latest.pt`, or one
    `checkpoints/step_*.pt` file), rebuilt for `env`'s spaces, as `policy(obs, info) -> action`.

    Actions are sampled from the agent's policy unless `deterministic` (then its mode, as in evaluation);
    sampling is seeded by `seed` and never moves torch's global RNG (CPU, nor the CUDA device of `device`).
    """
    if path is None:
        raise ValueError("policy.kind=checkpoint needs policy.checkpoint: a run directory or a .pt file")
    import torch

    from embodied_rl.trainers.loading import load_agent  # data sits below trainers: import when used

    cuda = _cuda_index(device)
    with torch.random.fork_rng(devices=[] if cuda is None else [cuda]):  # building draws initial weights
        agent, _, _ = load_agent(path, env=env, device=device)
    return CheckpointPolicy(agent, deterministic, seed)


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

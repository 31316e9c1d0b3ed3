"""Flat (obs, action, reward, next_obs, terminated) transitions as torch tensors, for offline RL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory


@dataclass
class Transitions:
    """A batch of N transitions (a whole dataset or a sampled minibatch).

    `terminated` is 1.0 where the episode ended in a terminal state (bootstrap with `1 - terminated`);
    truncation is not termination. `episode_id` / `timestep` locate each transition in its dataset
    (None for transitions from a replay buffer).
    """

    obs: torch.Tensor  # (N, *obs_shape)
    action: torch.Tensor  # (N, A)
    reward: torch.Tensor  # (N,)
    next_obs: torch.Tensor  # (N, *obs_shape)
    terminated: torch.Tensor  # (N,) float32
    episode_id: torch.Tensor | None = None  # (N,) int64
    timestep: torch.Tensor | None = None  # (N,) int64

    def __len__(self) -> int:
        return self.reward.shape[0]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Transitions:
        """`fn` applied to every tensor, including each tensor of dict (Dict observation) fields."""

        def apply(value):
            if value is None:
                return None
            if isinstance(value, dict):
                return {key: fn(item) for key, item in value.items()}
            return fn(value)

        return Transitions(**{f.name: apply(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Transitions:
        """These transitions on `device` (dicts of tensors for Dict observations)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def index(self, idx: torch.Tensor) -> Transitions:
        """The transitions at `idx` (a (B,) int64 tensor on the same device)."""
        return self._map(lambda t: t[idx])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """A uniform minibatch (with replacement), drawn on the generator's device; no host sync unless the generator
        is on a GPU and the data on the host (`indices_to`)."""
        device = generator.device if generator is not None else self.reward.device
        idx = torch.randint(len(self), (batch_size,), generator=generator, device=device)
        return self.index(indices_to(idx, self.reward.device))


def indices_to(idx: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Indices drawn on one device, moved to the data's: asynchronously only towards a GPU (a non-blocking copy
    from a GPU to the host returns before the values land, and indexing would read them too early)."""
    device = torch.device(device)
    return idx.to(device, non_blocking=device.type == "cuda")


def default_obs_dtype(observations: np.ndarray) -> torch.dtype:
    """uint8 observations (pixels) stay uint8, anything else becomes float32."""
    return torch.uint8 if np.asarray(observations).dtype == np.uint8 else torch.float32


def transitions_from_trajectories(
    trajectories: Sequence[Trajectory],
    device: str | torch.device = "cpu",
    obs_dtype: torch.dtype | None = None,
) -> Transitions:
    """Flatten trajectories into transitions: transition t of an episode is (obs[t], a[t], r[t], obs[t+1]).

    `obs_dtype=None`: uint8 pixels stay uint8, other observations become float32.
    """
    if len(trajectories) == 0:
        raise DatasetError("no trajectories to build transitions from")
    if isinstance(trajectories[0].observations, dict):
        raise DatasetError(
            "transitions need array observations; load Dict datasets with load_trajectories(..., obs_key='state')"
        )
    obs_dtype = obs_dtype or default_obs_dtype(trajectories[0].observations)
    obs = np.concatenate([t.observations[:-1] for t in trajectories])  # (N, *obs_shape)
    next_obs = np.concatenate([t.observations[1:] for t in trajectories])
    episode_id = np.concatenate([np.full(len(t), t.episode_id) for t in trajectories])
    timestep = np.concatenate([np.arange(len(t)) for t in trajectories])

    def tensor(array: np.ndarray, dtype: torch.dtype | None) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

    return Transitions(
        obs=tensor(obs, obs_dtype),
        action=tensor(np.concatenate([t.actions for t in trajectories]), torch.float32),
        reward=tensor(np.concatenate([t.rewards for t in trajectories]), torch.float32),
        next_obs=tensor(next_obs, obs_dtype),
        terminated=tensor(np.concatenate([t.terminations for t in trajectories]), torch.float32),
        episode_id=tensor(episode_id, torch.int64),
        timestep=tensor(timestep, torch.int64),
    )

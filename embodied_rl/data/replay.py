"""A preallocated circular replay buffer of transitions, resident on CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from embodied_rl.data.transitions import Transitions

ArrayLike = np.ndarray | torch.Tensor | float | bool


def chronological_rows(state: dict[str, Any]) -> torch.Tensor:
    """Row indices of a `ReplayBuffer.state_dict()`, oldest first (once full, the oldest row is at `ptr`)."""
    size, ptr = int(state["size"]), int(state["ptr"])
    start = ptr if size == int(state["capacity"]) else 0
    return (torch.arange(size) + start) % max(size, 1)


class ReplayBuffer:
    """Transitions (obs, action, reward, next_obs, terminated) in fixed tensors of `capacity` rows.

    `add` takes one transition or a batch from a vector env (leading dim N); the oldest rows are
    overwritten once full. `sample` draws uniformly with an optional `torch.Generator` and returns
    `Transitions` on `device` without synchronising with it. `state_dict` / `load_state_dict` let a
    checkpoint hold the buffer.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        action_dim: int,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype = torch.float32,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_shape = tuple(obs_shape)
        self.action_dim = action_dim
        self.device = torch.device(device)
        self.obs_dtype = obs_dtype
        self.obs = torch.zeros((capacity, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.next_obs = torch.zeros_like(self.obs)
        self.action = torch.zeros((capacity, action_dim), dtype=torch.float32, device=self.device)
        self.reward = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.ptr = 0  # next row to write
        self.size = 0  # rows filled

    @classmethod
    def from_spaces(
        cls,
        capacity: int,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        device: str | torch.device = "cpu",
    ) -> ReplayBuffer:
        """Shapes from (single-env) gymnasium spaces; uint8 observations (pixels) stay uint8."""
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(f"ReplayBuffer stores Box observations, got {observation_space}")
        obs_dtype = torch.uint8 if observation_space.dtype == np.uint8 else torch.float32
        return cls(capacity, observation_space.shape, int(np.prod(action_space.shape)), device, obs_dtype)

    def __len__(self) -> int:
        return self.size

    def _fields(self) -> dict[str, torch.Tensor]:
        return {
            "obs": self.obs,
            "action": self.action,
            "reward": self.reward,
            "next_obs": self.next_obs,
            "terminated": self.terminated,
        }

    def add(
        self,
        obs: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        next_obs: ArrayLike,
        terminated: ArrayLike,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add one transition, or N (leading dim) from a vector env; rows where `mask` is False are skipped
        (e.g. the reset step of a gymnasium autoreset)."""
        batch = {
            "obs": obs,
            "action": action,
            "reward": reward,
            "next_obs": next_obs,
            "terminated": terminated,
        }
        batched = np.ndim(obs) == len(self.obs_shape) + 1
        tensors = {}
        for name, value in batch.items():
            storage = self._fields()[name]
            value = torch.as_tensor(value, dtype=storage.dtype).to(self.device)
            tensors[name] = value.reshape(-1, *storage.shape[1:]) if batched else value.reshape(1, *storage.shape[1:])
        if mask is not None:
            keep = torch.as_tensor(mask, dtype=torch.bool).reshape(-1).to(self.device)
            tensors = {name: value[keep] for name, value in tensors.items()}
        n = tensors["reward"].shape[0]
        if n > self.capacity:  # only the newest `capacity` rows survive
            tensors = {name: value[-self.capacity :] for name, value in tensors.items()}
            n = self.capacity
        first = min(n, self.capacity - self.ptr)  # rows before the end of storage, the rest wrap to 0
        for name, value in tensors.items():
            storage = self._fields()[name]
            storage[self.ptr : self.ptr + first] = value[:first]
            storage[: n - first] = value[first:]
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """`batch_size` transitions drawn uniformly with replacement from the filled rows."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        device = generator.device if generator is not None else self.device
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=device)
        idx = idx.to(self.device, non_blocking=True)
        return Transitions(**{name: storage[idx] for name, storage in self._fields().items()})

    def state_dict(self) -> dict[str, Any]:
        """Filled rows (on CPU) and the write position."""
        state: dict[str, Any] = {"capacity": self.capacity, "ptr": self.ptr, "size": self.size}
        for name, storage in self._fields().items():
            # clone: a view would make torch.save write the whole preallocated storage
            state[name] = storage[: self.size].cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state`. A buffer of another capacity (a run resumed with a new `trainer.replay_size`)
        takes the stored rows oldest first and keeps the newest `capacity` of them."""
        for name, storage in self._fields().items():
            if tuple(state[name].shape[1:]) != tuple(storage.shape[1:]):
                raise ValueError(
                    f"replay state {name!r} has rows of shape {tuple(state[name].shape[1:])}, "
                    f"this buffer {tuple(storage.shape[1:])}"
                )
        size, ptr = state["size"], state["ptr"]
        if state["capacity"] == self.capacity:
            for name, storage in self._fields().items():
                storage[:size] = state[name].to(self.device, storage.dtype)
            self.ptr, self.size = ptr, size
            return
        order = chronological_rows(state)[-self.capacity :]
        for name, storage in self._fields().items():
            storage[: len(order)] = state[name][order].to(self.device, storage.dtype)
        self.size = len(order)
        self.ptr = self.size % self.capacity

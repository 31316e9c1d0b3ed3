"""A preallocated circular replay buffer of transitions, resident on CPU or GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from embodied_rl.data.transitions import Transitions, indices_to

ArrayLike = np.ndarray | torch.Tensor | float | bool
FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


def chronological_rows(state: dict[str, Any]) -> torch.Tensor:
    """Row indices of a `ReplayBuffer.state_dict()`, oldest first (once full, the oldest row is at `ptr`)."""
    size, ptr = int(state["size"]), int(state["ptr"])
    start = ptr if size == int(state["capacity"]) else 0
    return (torch.arange(size) + start) % max(size, 1)


def _obs_spec(space: gym.Space) -> tuple[Any, Any]:
    """(shape, dtype) of a Box observation space, or dicts of them by key for a Dict of Boxes.
    uint8 observations (pixels) stay uint8, anything else becomes float32."""
    if isinstance(space, gym.spaces.Dict) and all(isinstance(s, gym.spaces.Box) for s in space.spaces.values()):
        specs = {key: _obs_spec(s) for key, s in space.spaces.items()}
        return {k: shape for k, (shape, _) in specs.items()}, {k: dtype for k, (_, dtype) in specs.items()}
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"ReplayBuffer stores Box or Dict-of-Box observations, got {space}")
    return space.shape, torch.uint8 if space.dtype == np.uint8 else torch.float32


class ReplayBuffer:
    """Transitions (obs, action, reward, next_obs, terminated) in fixed tensors of `capacity` rows.

    Observations are one tensor, or a dict of tensors (one per key) for Dict observations: pass
    `obs_shape` and `obs_dtype` as dicts by key, and `add` / `sample` take and give dicts. `obs` and
    `next_obs` are stored separately, so observations take twice their size. `add` takes one transition
    or a batch from a vector env (leading dim N); the oldest rows are overwritten once full. `sample`
    draws uniformly with an optional `torch.Generator` and returns `Transitions` on `device` without
    synchronising with it (unless the generator is on a GPU and the buffer on the host: `indices_to`).
    `state_dict` / `load_state_dict` let a checkpoint hold the buffer.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int] | Mapping[str, Sequence[int]],
        action_dim: int,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype | Mapping[str, torch.dtype] = torch.float32,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.action_dim = action_dim
        self.device = torch.device(device)
        if isinstance(obs_shape, Mapping):
            self.obs_shape = {key: tuple(shape) for key, shape in obs_shape.items()}
            dtypes = obs_dtype if isinstance(obs_dtype, Mapping) else dict.fromkeys(obs_shape, obs_dtype)
            self.obs_dtype = {key: dtypes[key] for key in obs_shape}
            self.obs = {key: self._zeros(shape, self.obs_dtype[key]) for key, shape in self.obs_shape.items()}
            self.next_obs = {key: torch.zeros_like(value) for key, value in self.obs.items()}
        else:
            self.obs_shape, self.obs_dtype = tuple(obs_shape), obs_dtype
            self.obs = self._zeros(self.obs_shape, obs_dtype)
            self.next_obs = torch.zeros_like(self.obs)
        self.action = self._zeros((action_dim,), torch.float32)
        self.reward = self._zeros((), torch.float32)
        self.terminated = self._zeros((), torch.float32)
        self.ptr = 0  # next row to write
        self.size = 0  # rows filled

    def _zeros(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros((self.capacity, *shape), dtype=dtype, device=self.device)

    @classmethod
    def from_spaces(
        cls,
        capacity: int,
        observation_space: gym.spaces.Box | gym.spaces.Dict,
        action_space: gym.spaces.Box,
        device: str | torch.device = "cpu",
    ) -> ReplayBuffer:
        """Shapes from (single-env) gymnasium spaces; uint8 observations (pixels) stay uint8."""
        obs_shape, obs_dtype = _obs_spec(observation_space)
        return cls(capacity, obs_shape, int(np.prod(action_space.shape)), device, obs_dtype)

    @staticmethod
    def nbytes(capacity: int, observation_space: gym.Space, action_space: gym.spaces.Box) -> int:
        """Bytes that `from_spaces(capacity, ...)` allocates: obs and next_obs (each stored), action,
        reward and terminated."""
        obs_shape, obs_dtype = _obs_spec(observation_space)
        if not isinstance(obs_shape, Mapping):
            obs_shape, obs_dtype = {"": obs_shape}, {"": obs_dtype}
        obs = sum(int(np.prod(shape)) * obs_dtype[key].itemsize for key, shape in obs_shape.items())
        row = 2 * obs + 4 * (int(np.prod(action_space.shape)) + 2)  # float32 action, reward, terminated
        return capacity * row

    def __len__(self) -> int:
        return self.size

    def _fields(self) -> dict[str, torch.Tensor]:
        """Every storage tensor by name; the keys of Dict observations as "obs.<key>" / "next_obs.<key>"."""
        return _flatten({name: getattr(self, name) for name in FIELDS})

    def add(
        self,
        obs: ArrayLike | dict[str, ArrayLike],
        action: ArrayLike,
        reward: ArrayLike,
        next_obs: ArrayLike | dict[str, ArrayLike],
        terminated: ArrayLike,
        truncated: ArrayLike | None = None,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add one transition, or N (leading dim) from a vector env; rows where `mask` is False are skipped
        (e.g. the reset step of a gymnasium autoreset). `truncated` is accepted and not stored: a transition
        needs only termination (no bootstrapping), but every storage of the online trainer takes it (a sequence
        store needs it to know where episodes end)."""
        batch = _flatten(
            {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "terminated": terminated}
        )
        storages = self._fields()
        if batch.keys() != storages.keys():
            raise ValueError(f"replay fields {sorted(batch)} do not match the buffer's {sorted(storages)}")
        tensors = {}
        for name, storage in storages.items():
            _check_field(name, batch[name], storage)
            value = torch.as_tensor(batch[name], dtype=storage.dtype).to(self.device)
            tensors[name] = value.reshape(-1, *storage.shape[1:])  # one transition -> a batch of 1
        rows = {name: value.shape[0] for name, value in tensors.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"replay fields hold different numbers of rows: {rows}")
        if mask is not None:
            keep = torch.as_tensor(mask, dtype=torch.bool).reshape(-1).to(self.device)
            tensors = {name: value[keep] for name, value in tensors.items()}
        n = tensors["reward"].shape[0]
        if n > self.capacity:  # only the newest `capacity` rows survive
            tensors = {name: value[-self.capacity :] for name, value in tensors.items()}
            n = self.capacity
        first = min(n, self.capacity - self.ptr)  # rows before the end of storage, the rest wrap to 0
        for name, value in tensors.items():
            storage = storages[name]
            storage[self.ptr : self.ptr + first] = value[:first]
            storage[: n - first] = value[first:]
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """`batch_size` transitions drawn uniformly with replacement from the filled rows (obs / next_obs
        as dicts of tensors for Dict observations)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        device = generator.device if generator is not None else self.device
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=device)
        idx = indices_to(idx, self.device)
        return Transitions(**_unflatten({name: storage[idx] for name, storage in self._fields().items()}))

    def state_dict(self) -> dict[str, Any]:
        """Filled rows (on CPU; dicts of tensors for Dict observations) and the write position."""
        # a copy: a view would make torch.save write the whole preallocated storage
        rows = {name: storage[: self.size].to("cpu", copy=True) for name, storage in self._fields().items()}
        return {"capacity": self.capacity, "ptr": self.ptr, "size": self.size, **_unflatten(rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state`. A buffer of another capacity (a run resumed with a new `trainer.replay_size`)
        takes the stored rows oldest first and keeps the newest `capacity` of them."""
        stored = _flatten({name: state[name] for name in FIELDS})
        storages = self._fields()
        if stored.keys() != storages.keys():
            raise ValueError(f"replay state holds {sorted(stored)}, this buffer {sorted(storages)}")
        for name, storage in storages.items():
            if tuple(stored[name].shape[1:]) != tuple(storage.shape[1:]):
                raise ValueError(
                    f"replay state {name!r} has rows of shape {tuple(stored[name].shape[1:])}, "
                    f"this buffer {tuple(storage.shape[1:])}"
                )
        size, ptr = state["size"], state["ptr"]
        if state["capacity"] == self.capacity:
            for name, storage in storages.items():
                storage[:size] = stored[name].to(self.device, storage.dtype)
            self.ptr, self.size = ptr, size
            return
        order = chronological_rows(state)[-self.capacity :]
        for name, storage in storages.items():
            storage[: len(order)] = stored[name][order].to(self.device, storage.dtype)
        self.size = len(order)
        self.ptr = self.size % self.capacity


def _check_field(name: str, value: Any, storage: torch.Tensor) -> None:
    """One transition (the storage's row shape) or N of them (N, *row shape): anything else would be silently
    reshaped into rows (an image laid out (C, H, W) for an (H, W, C) buffer, a vector env's (S, N)); pixels
    must come as uint8, since a float image would be cast, not scaled."""
    shape, row = tuple(getattr(value, "shape", np.shape(value))), tuple(storage.shape[1:])
    if shape != row and shape[1:] != row and not (row == () and shape[1:] == (1,)):  # (N, 1) rewards are fine
        raise ValueError(f"replay field {name!r} of shape {shape}: the buffer takes {row} or (N, *{row})")
    dtype = getattr(value, "dtype", np.asarray(value).dtype)
    if storage.dtype == torch.uint8 and dtype not in (np.uint8, torch.uint8):
        raise TypeError(f"replay field {name!r} is {dtype}; the buffer stores uint8 pixels (a cast would not scale)")


def _flatten(fields: dict[str, Any]) -> dict[str, Any]:
    """{"obs": {"pixels": a}, "reward": r} -> {"obs.pixels": a, "reward": r}."""
    flat = {}
    for name, value in fields.items():
        if isinstance(value, Mapping):
            flat.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    return flat


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `_flatten`."""
    fields: dict[str, Any] = {}
    for name, value in flat.items():
        if "." in name:
            field, key = name.split(".", 1)
            fields.setdefault(field, {})[key] = value
        else:
            fields[name] = value
    return fields

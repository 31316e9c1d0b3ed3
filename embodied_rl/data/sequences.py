"""Sequence replay for world models: windows of L consecutive steps that never cross an episode boundary.

Steps are stored in the world-model layout (as in Dreamer): row t of an episode holds observation o_t, the
action a_{t-1} that led to it and the reward r_{t-1} received on arriving there; at the reset row
(`is_first`) the previous action and reward are zeros. An episode of T steps therefore fills T+1 rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.data.transitions import default_obs_dtype


@dataclass
class Sequences:
    """B windows of L consecutive steps of one episode each."""

    obs: torch.Tensor  # (B, L, *obs_shape)
    prev_action: torch.Tensor  # (B, L, A), the action that led to obs (zeros where is_first)
    reward: torch.Tensor  # (B, L), the reward received on arriving at obs (0 where is_first)
    is_first: torch.Tensor  # (B, L) bool, obs is a reset observation
    is_terminal: torch.Tensor  # (B, L) bool, obs is terminal (no bootstrapping from it)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Sequences:
        """The same windows on `device` (tensors already there are not copied)."""
        return Sequences(**{k: v.to(device, non_blocking=non_blocking) for k, v in vars(self).items()})


class _IndexSet:
    """A set of ints in [0, capacity) with O(1) insert / remove and uniform sampling by position."""

    def __init__(self, capacity: int):
        self.members = np.zeros(capacity, dtype=np.int64)  # members[:size] are the elements
        self.where = np.full(capacity, -1, dtype=np.int64)  # position of an element in members, or -1
        self.size = 0

    def update(self, items: np.ndarray, present: np.ndarray) -> None:
        """Make `items[i]` a member iff `present[i]`."""
        inside = self.where[items] >= 0
        for item in items[inside & ~present]:  # removals: swap the last member into the hole
            hole, last = self.where[item], self.members[self.size - 1]
            self.members[hole], self.where[last] = last, hole
            self.where[item] = -1
            self.size -= 1
        added = items[present & ~inside]
        self.members[self.size : self.size + len(added)] = added
        self.where[added] = self.size + np.arange(len(added))
        self.size += len(added)


class SequenceReplay:
    """Preallocated step storage split into `num_streams` circular blocks (one per vector-env slot).

    Online, `add` appends one step per stream; offline, `add_trajectory` (or `from_trajectories`)
    appends whole episodes. `sample` draws B windows of `seq_len` rows uniformly over all valid windows:
    the rows of a window come from one episode and were written consecutively. Bookkeeping lives on the
    host; the data tensors live on `device`, and sampling copies only the (B, L) row indices to it
    (non-blocking, so no device sync).
    """

    _DATA = ("obs", "prev_action", "reward", "is_first", "is_terminal")
    _BOOKKEEPING = ("_episode", "_stamp", "_ptr", "_writes", "_stream_episode")

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        action_dim: int,
        seq_len: int,
        num_streams: int = 1,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype = torch.float32,
    ):
        self.block = capacity // num_streams  # rows per stream
        if self.block < seq_len:
            raise ValueError(f"capacity {capacity} / {num_streams} streams is shorter than seq_len {seq_len}")
        self.capacity = self.block * num_streams
        self.obs_shape, self.action_dim, self.seq_len = tuple(obs_shape), action_dim, seq_len
        self.num_streams = num_streams
        self.device = torch.device(device)
        self.obs = torch.zeros((self.capacity, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.prev_action = torch.zeros((self.capacity, action_dim), dtype=torch.float32, device=self.device)
        self.reward = torch.zeros(self.capacity, dtype=torch.float32, device=self.device)
        self.is_first = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
        self.is_terminal = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
        self._episode = np.full(self.capacity, -1, dtype=np.int64)  # episode id of each row (-1: empty)
        self._stamp = np.full(self.capacity, -1, dtype=np.int64)  # write counter of its stream at that row
        self._ptr = np.zeros(num_streams, dtype=np.int64)  # next row to write, within each block
        self._writes = np.zeros(num_streams, dtype=np.int64)  # rows written to each stream so far
        self._stream_episode = np.full(num_streams, -1, dtype=np.int64)  # episode being written per stream
        self._next_episode = 0
        self._starts = _IndexSet(self.capacity)  # rows where a valid window starts

    @classmethod
    def from_trajectories(
        cls,
        trajectories: Sequence[Trajectory],
        seq_len: int,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype | None = None,
    ) -> SequenceReplay:
        """A replay holding exactly these episodes (offline world-model training); uint8 pixels stay uint8."""
        if len(trajectories) == 0 or isinstance(trajectories[0].observations, dict):
            raise DatasetError("sequences need trajectories with array observations (use obs_key for Dict data)")
        if max(len(t) + 1 for t in trajectories) < seq_len:
            raise DatasetError(f"no episode has the {seq_len} observations a sequence needs")
        first = trajectories[0]
        obs_dtype = obs_dtype or default_obs_dtype(first.observations)
        capacity = max(sum(len(t) + 1 for t in trajectories), seq_len)
        replay = cls(capacity, first.observations.shape[1:], first.actions.shape[1], seq_len, 1, device, obs_dtype)
        for trajectory in trajectories:
            replay.add_trajectory(trajectory)
        return replay

    def __len__(self) -> int:
        """Rows filled."""
        return int((self._episode >= 0).sum())

    @property
    def num_windows(self) -> int:
        return self._starts.size

    def _write(self, stream: int, data: dict[str, torch.Tensor], episode: np.ndarray) -> None:
        """Write n rows (n <= block) to a stream's block and refresh the window starts they touch."""
        n = len(episode)
        base = stream * self.block
        local = (self._ptr[stream] + np.arange(n)) % self.block
        rows = base + local
        rows_t = torch.as_tensor(rows, device=self.device)
        for name, value in data.items():
            getattr(self, name)[rows_t] = value
        self._episode[rows] = episode
        self._stamp[rows] = self._writes[stream] + np.arange(n)
        self._ptr[stream] = (self._ptr[stream] + n) % self.block
        self._writes[stream] += n
        # Windows that contain a written row start at most seq_len - 1 rows before it.
        candidates = np.unique((local[:, None] - np.arange(self.seq_len)[None]) % self.block) + base
        ends = base + (candidates - base + self.seq_len - 1) % self.block
        valid = (
            (self._episode[candidates] >= 0)
            & (self._episode[candidates] == self._episode[ends])
            & (self._stamp[ends] - self._stamp[candidates] == self.seq_len - 1)
        )
        self._starts.update(candidates, valid)

    def _tensor(self, value: Any, like: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.as_tensor(value, dtype=like.dtype).to(self.device).reshape(rows, *like.shape[1:])

    def add(self, obs: Any, prev_action: Any, reward: Any, is_first: Any, is_terminal: Any) -> None:
        """One step per stream (leading dim `num_streams`; unbatched when there is one stream).

        Pass `is_first=True` with the reset observation (prev_action and reward zeros).
        """
        n = self.num_streams
        first = np.asarray(is_first, dtype=bool).reshape(n)
        data = {
            "obs": self._tensor(obs, self.obs, n),
            "prev_action": self._tensor(prev_action, self.prev_action, n),
            "reward": self._tensor(reward, self.reward, n),
            "is_first": self._tensor(first, self.is_first, n),
            "is_terminal": self._tensor(is_terminal, self.is_terminal, n),
        }
        for stream in range(n):
            self._add_row(stream, {name: value[stream : stream + 1] for name, value in data.items()}, first[stream])

    def add_row(
        self, stream: int, obs: Any, prev_action: Any, reward: float, is_first: bool, is_terminal: bool
    ) -> None:
        """One step of one stream (an env whose episode starts while the others' go on)."""
        row = {
            "obs": self._tensor(np.asarray(obs)[None], self.obs, 1),
            "prev_action": self._tensor(np.asarray(prev_action)[None], self.prev_action, 1),
            "reward": self._tensor([reward], self.reward, 1),
            "is_first": self._tensor([is_first], self.is_first, 1),
            "is_terminal": self._tensor([is_terminal], self.is_terminal, 1),
        }
        self._add_row(stream, row, is_first)

    def _add_row(self, stream: int, row: dict[str, torch.Tensor], is_first: bool) -> None:
        if is_first or self._stream_episode[stream] < 0:  # a new episode in this stream
            self._stream_episode[stream] = self._next_episode
            self._next_episode += 1
        self._write(stream, row, self._stream_episode[stream : stream + 1])

    def add_trajectory(self, trajectory: Trajectory, stream: int = 0) -> None:
        """Append a whole episode (T+1 rows) to a stream; the stream's next `add` starts a new episode."""
        steps = len(trajectory)
        prev_action = np.concatenate([np.zeros((1, self.action_dim)), trajectory.actions])  # (T+1, A)
        data = {
            "obs": self._tensor(trajectory.observations, self.obs, steps + 1),
            "prev_action": self._tensor(prev_action, self.prev_action, steps + 1),
            "reward": self._tensor(np.concatenate([[0.0], trajectory.rewards]), self.reward, steps + 1),
            "is_first": self._tensor(np.arange(steps + 1) == 0, self.is_first, steps + 1),
            "is_terminal": self._tensor(
                np.concatenate([[False], trajectory.terminations]), self.is_terminal, steps + 1
            ),
        }
        keep = min(steps + 1, self.block)  # an episode longer than the block keeps its newest rows
        data = {name: value[-keep:] for name, value in data.items()}
        self._write(stream, data, np.full(keep, self._next_episode))
        self._next_episode += 1
        self._stream_episode[stream] = -1

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Sequences:
        """B windows drawn uniformly with replacement. `generator` must be a CPU generator (window starts
        are drawn on the host, where the bookkeeping is)."""
        if self._starts.size == 0:
            raise RuntimeError(f"no stored episode segment has {self.seq_len} consecutive rows yet")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("SequenceReplay.sample needs a CPU torch.Generator")
        pick = torch.randint(self._starts.size, (batch_size,), generator=generator)
        starts = torch.from_numpy(self._starts.members[: self._starts.size])[pick]  # (B,)
        base = starts // self.block * self.block  # first row of each start's stream block
        local = (starts - base)[:, None] + torch.arange(self.seq_len)  # (B, L), may run past the block end
        rows = base[:, None] + local % self.block  # (B, L)
        rows = rows.to(self.device, non_blocking=True)
        return Sequences(
            obs=self.obs[rows],
            prev_action=self.prev_action[rows],
            reward=self.reward[rows],
            is_first=self.is_first[rows],
            is_terminal=self.is_terminal[rows],
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: stored rows (on CPU) and the host bookkeeping."""
        # clone: on CPU `.cpu()` returns the live storage, which a later `add` would change
        state: dict[str, Any] = {name: getattr(self, name).cpu().clone() for name in self._DATA}
        state.update({name: getattr(self, name).copy() for name in self._BOOKKEEPING})
        state["next_episode"] = self._next_episode
        state["starts"] = self._starts.members[: self._starts.size].copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._DATA:
            storage = getattr(self, name)
            if tuple(state[name].shape) != tuple(storage.shape):
                raise ValueError(
                    f"sequence replay state {name!r} has shape {tuple(state[name].shape)}, "
                    f"this replay {tuple(storage.shape)}"
                )
            storage.copy_(state[name].to(self.device, storage.dtype))
        for name in self._BOOKKEEPING:
            setattr(self, name, state[name].copy())
        self._next_episode = int(state["next_episode"])
        self._starts = _IndexSet(self.capacity)
        self._starts.update(state["starts"], np.ones(len(state["starts"]), dtype=bool))


class TransitionSequences:
    """A `SequenceReplay` fed by the online trainer, transition by transition (the trainer's storage protocol:
    `add(obs, action, reward, next_obs, terminated, truncated=)`, `sample(batch_size)`, `state_dict()`).

    One stream per vector env. A sub-env's first transition of an episode writes two rows, the reset observation
    (`is_first`) and the step's; every later one writes the step's row (next_obs, the action and reward that led
    there, `is_terminal` = terminated). `next_obs` must be the observation the step reached (the trainer passes a
    finished episode's final observation, not the reset that followed). `sample` gives B windows of `seq_len` rows.
    """

    def __init__(self, replay: SequenceReplay):
        self.replay = replay
        self.open = np.zeros(replay.num_streams, dtype=bool)  # a stream's episode has started

    @classmethod
    def create(
        cls, capacity: int, obs_shape: Sequence[int], action_dim: int, seq_len: int, num_envs: int, device, obs_dtype
    ) -> TransitionSequences:
        return cls(SequenceReplay(capacity, obs_shape, action_dim, seq_len, num_envs, device, obs_dtype))

    @staticmethod
    def nbytes(capacity: int, obs_shape: Sequence[int], action_dim: int, obs_itemsize: int) -> int:
        """Bytes the replay's tensors take (one copy of each observation, unlike a transition buffer)."""
        return capacity * (int(np.prod(obs_shape)) * obs_itemsize + 4 * action_dim + 4 + 2)

    def __len__(self) -> int:
        return len(self.replay)

    def add(self, obs, action, reward, next_obs, terminated, truncated=None) -> None:
        n = self.replay.num_streams
        obs = np.asarray(obs).reshape(n, *self.replay.obs_shape)
        next_obs = np.asarray(next_obs).reshape(n, *self.replay.obs_shape)
        action = np.asarray(action, dtype=np.float32).reshape(n, -1)
        reward = np.asarray(reward, dtype=np.float32).reshape(n)
        terminated = np.asarray(terminated, dtype=bool).reshape(n)
        done = terminated | (np.zeros(n, bool) if truncated is None else np.asarray(truncated, dtype=bool).reshape(n))
        zeros = np.zeros(self.replay.action_dim, np.float32)
        for stream in range(n):
            if not self.open[stream]:  # the reset observation starts the stream's next episode
                self.replay.add_row(stream, obs[stream], zeros, 0.0, True, False)
            self.replay.add_row(stream, next_obs[stream], action[stream], reward[stream], False, terminated[stream])
        self.open = ~done

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Sequences:
        return self.replay.sample(batch_size, generator)

    def state_dict(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rows; every stream's next transition starts a new episode (a resumed trainer resets its
        envs, so the episodes in progress at the checkpoint never continue)."""
        self.replay.load_state_dict(state["replay"])
        self.open[:] = False

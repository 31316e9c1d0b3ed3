"""Fixed-length segments for preference learning: windows of H steps that never cross an episode boundary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.data.transitions import default_obs_dtype, indices_to


@dataclass
class Segments:
    """N segments of H steps; each is a short trajectory: H+1 observations / frames around H actions."""

    obs: torch.Tensor  # (N, H+1, *obs_shape)
    action: torch.Tensor  # (N, H, A)
    reward: torch.Tensor  # (N, H)
    success: torch.Tensor  # (N, H) bool
    terminated: torch.Tensor  # (N, H) bool
    episode_id: torch.Tensor  # (N,) int64
    start: torch.Tensor  # (N,) int64, time step of the first action within its episode
    frames: torch.Tensor | None = None  # (N, H+1, H_img, W_img, 3) uint8

    def __len__(self) -> int:
        return self.reward.shape[0]


class SegmentSampler:
    """Every window of `length` steps inside an episode, concatenated once on `device`; sampling gathers.

    Segment k of the table starts at step `start` of an episode with at least `length` steps;
    `sample` draws uniformly over all such windows.
    """

    def __init__(
        self,
        trajectories: Sequence[Trajectory],
        length: int,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype | None = None,
        with_frames: bool = True,
    ):
        if length < 1:
            raise ValueError(f"segment length must be >= 1, got {length}")
        usable = [t for t in trajectories if len(t) >= length]
        if not usable:
            longest = max((len(t) for t in trajectories), default=0)
            raise DatasetError(f"no episode has {length} steps for a segment (longest: {longest})")
        if isinstance(usable[0].observations, dict):
            raise DatasetError("segments need array observations; load with load_trajectories(..., obs_key='state')")
        self.length = length
        obs_dtype = obs_dtype or default_obs_dtype(usable[0].observations)
        self.device = torch.device(device)

        def tensor(arrays: list[np.ndarray], dtype: torch.dtype | None) -> torch.Tensor:
            return torch.as_tensor(np.concatenate(arrays), dtype=dtype, device=self.device)

        self._obs = tensor([t.observations for t in usable], obs_dtype)  # (sum T+1, *obs_shape)
        self._action = tensor([t.actions for t in usable], torch.float32)  # (sum T, A)
        self._reward = tensor([t.rewards for t in usable], torch.float32)  # (sum T,)
        self._success = tensor([t.success for t in usable], torch.bool)
        self._terminated = tensor([t.terminations for t in usable], torch.bool)
        has_frames = with_frames and all(t.frames is not None for t in usable)
        self._frames = tensor([t.frames for t in usable], torch.uint8) if has_frames else None

        # One row per valid window: where its first observation / step sits in the flat arrays.
        lengths = np.array([len(t) for t in usable])
        step_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        obs_offsets = step_offsets + np.arange(len(usable))  # each episode has one extra observation
        starts = [np.arange(n - length + 1) for n in lengths]
        table = {
            "obs_index": np.concatenate([o + s for o, s in zip(obs_offsets, starts)]),
            "step_index": np.concatenate([o + s for o, s in zip(step_offsets, starts)]),
            "episode_id": np.concatenate([np.full(len(s), t.episode_id) for t, s in zip(usable, starts)]),
            "start": np.concatenate(starts),
        }
        self._table = {k: torch.as_tensor(v, dtype=torch.int64, device=self.device) for k, v in table.items()}
        self._steps = torch.arange(length, device=self.device)  # (H,)
        self._obs_steps = torch.arange(length + 1, device=self.device)  # (H+1,)

    @property
    def num_segments(self) -> int:
        return self._table["start"].shape[0]

    def gather(self, segment_index: torch.Tensor) -> Segments:
        """Segments by row of the window table, `segment_index` (N,) int64 in [0, num_segments)."""
        segment_index = indices_to(segment_index, self.device)
        obs_idx = self._table["obs_index"][segment_index, None] + self._obs_steps  # (N, H+1)
        step_idx = self._table["step_index"][segment_index, None] + self._steps  # (N, H)
        return Segments(
            obs=self._obs[obs_idx],
            action=self._action[step_idx],
            reward=self._reward[step_idx],
            success=self._success[step_idx],
            terminated=self._terminated[step_idx],
            episode_id=self._table["episode_id"][segment_index],
            start=self._table["start"][segment_index],
            frames=None if self._frames is None else self._frames[obs_idx],
        )

    def sample(self, num: int, generator: torch.Generator | None = None) -> Segments:
        """`num` segments drawn uniformly (with replacement) over all windows; no host sync."""
        device = generator.device if generator is not None else self.device
        return self.gather(torch.randint(self.num_segments, (num,), generator=generator, device=device))

"""Observation normalisation with statistics from a dataset, kept in a module's state_dict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory


class ObservationNormalizer(nn.Module):
    """`(obs - mean) / std` and back. Mean and std are buffers: they move with `.to(device)` and are
    saved and restored by `state_dict` / `load_state_dict`.

    Dimensions whose std is below `min_std` (constant in the data, e.g. Meta-World's padding) get
    std 1, so an unseen value at test time is shifted but never blown up.
    """

    def __init__(self, shape: Sequence[int] | int, min_std: float = 1e-3):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def fit(self, obs: torch.Tensor | np.ndarray) -> ObservationNormalizer:
        """Set mean and std from a batch of observations (N, *shape)."""
        obs = torch.as_tensor(obs, dtype=torch.float64)
        if obs.shape[1:] != self.mean.shape:
            raise DatasetError(
                f"observations of shape {tuple(obs.shape[1:])} for a normalizer of {tuple(self.mean.shape)}"
            )
        if not torch.isfinite(obs).all():
            raise DatasetError("observations hold NaN or inf values: the normalisation statistics would be NaN")
        std = obs.std(dim=0, unbiased=False)
        std = torch.where(std < self.min_std, torch.ones_like(std), std)
        self.mean.copy_(obs.mean(dim=0))
        self.std.copy_(std)
        return self

    @classmethod
    def from_trajectories(cls, trajectories: Sequence[Trajectory], min_std: float = 1e-3) -> ObservationNormalizer:
        """Statistics over every observation of every trajectory (array observations)."""
        if len(trajectories) == 0 or isinstance(trajectories[0].observations, dict):
            raise DatasetError("normalizer needs trajectories with array observations (use obs_key for Dict data)")
        obs = np.concatenate([t.observations for t in trajectories])  # (sum T+1, *obs_shape)
        return cls(obs.shape[1:], min_std=min_std).fit(obs)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std

    def denormalize(self, obs: torch.Tensor) -> torch.Tensor:
        return obs * self.std + self.mean

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalize(obs)

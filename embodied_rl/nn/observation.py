"""One encoder for every observation mode: state vectors, pixels, or a Dict of both.

| observation space                         | encoder                                 | features          |
|-------------------------------------------|-----------------------------------------|-------------------|
| float Box (D,)                            | identity                                | (B, D)            |
| uint8 Box (H, W, C) or (C, H, W)          | `ConvEncoder`                           | (B, feature_dim)  |
| Dict {"pixels": uint8 Box, "state": Box}  | concat(`ConvEncoder`(pixels), state)    | (B, feature_dim + D) |

Pixel layout is read from the space's shape: channels-last when the last dim is the smallest
(e.g. (64, 64, 3), (84, 84, 9)), channels-first otherwise (e.g. (9, 84, 84)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from embodied_rl.nn.cnn import ConvEncoder

Observation = torch.Tensor | dict[str, torch.Tensor]


def is_pixel_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def is_channels_last(image_shape: Sequence[int]) -> bool:
    """(H, W, C) when the last dim is the smallest, else (C, H, W)."""
    return image_shape[-1] < image_shape[0]


def map_pixels(obs: Observation, fn: Callable[[torch.Tensor], torch.Tensor], pixels: bool) -> Observation:
    """Apply `fn` to the image part of an observation (the whole tensor, or the "pixels" entry of a dict)."""
    if isinstance(obs, dict):
        return {**obs, "pixels": fn(obs["pixels"])}
    return fn(obs) if pixels else obs


class ObservationEncoder(nn.Module):
    """Observation (tensor or dict of tensors, leading batch dim) -> feature vector (B, out_dim)."""

    def __init__(
        self,
        observation_space: gym.Space,
        feature_dim: int = 50,
        num_filters: int = 32,
        num_layers: int = 4,
        mixed_precision: bool = False,
    ):
        super().__init__()
        self.is_dict = isinstance(observation_space, gym.spaces.Dict)
        if self.is_dict:
            unknown = set(observation_space.spaces) - {"pixels", "state"}
            if unknown or "pixels" not in observation_space.spaces:
                raise ValueError(
                    f"Dict observations need keys 'pixels' and optionally 'state', got "
                    f"{sorted(observation_space.spaces)}"
                )
            pixel_space = observation_space["pixels"]
            state_space = observation_space.spaces.get("state")
        elif is_pixel_space(observation_space):
            pixel_space, state_space = observation_space, None
        elif isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1:
            pixel_space, state_space = None, observation_space
        else:
            raise ValueError(
                f"unsupported observation space {observation_space}: expected a 1-D float Box, a uint8 image "
                f"Box (H, W, C) / (C, H, W), or a Dict with 'pixels' and 'state'"
            )
        if pixel_space is not None and not is_pixel_space(pixel_space):
            raise ValueError(f"'pixels' must be a uint8 Box of rank 3, got {pixel_space}")

        self.has_pixels = pixel_space is not None
        self.channels_last = self.has_pixels and is_channels_last(pixel_space.shape)
        self.conv = (
            ConvEncoder(pixel_space.shape, feature_dim, num_filters, num_layers, self.channels_last, mixed_precision)
            if self.has_pixels
            else None
        )
        self.state_dim = int(state_space.shape[0]) if state_space is not None else 0
        self.out_dim = (feature_dim if self.has_pixels else 0) + self.state_dim

    def forward(self, obs: Observation) -> torch.Tensor:
        if self.is_dict:
            features = self.conv(obs["pixels"])
            if self.state_dim:
                features = torch.cat([features, obs["state"].float()], dim=-1)  # (B, feature_dim + D)
            return features
        if self.has_pixels:
            return self.conv(obs)
        return obs.float()

"""Convolutional encoder for pixel observations (SAC-AE, Yarats et al. 2019; DrQ, Kostrikov et al. 2020).

Layout: images are channels-last uint8, (..., H, W, C), as gymnasium pixel observations and the project's
`frames` arrays are; C = 3k for k stacked RGB frames. Pass `channels_last=False` for (..., C, H, W).
Any leading dims are kept: (B, H, W, C) -> (B, feature_dim), (B, T, H, W, C) -> (B, T, feature_dim).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from embodied_rl.nn.init import orthogonal_init_
from embodied_rl.nn.mlp import ReLU


class ConvEncoder(nn.Module):
    """uint8 images -> features in [-1, 1].

    Pixels are scaled to [-0.5, 0.5]; a 3x3 conv with stride 2 then `num_layers - 1` 3x3 convs with stride 1
    (ReLU after each) give 35x35 maps at 84x84 input and 25x25 at 64x64; the flattened maps go through
    Linear -> LayerNorm -> tanh to `feature_dim` (the SAC-AE / DrQ encoder). Orthogonal init as in DrQ.

    `mixed_precision=True` runs the convolutions and the Linear (nearly all of the encoder's arithmetic) under
    bfloat16 autocast; weights, gradients, the LayerNorm and the features stay float32.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        feature_dim: int = 50,
        num_filters: int = 32,
        num_layers: int = 4,
        channels_last: bool = True,
        mixed_precision: bool = False,
    ):
        super().__init__()
        self.mixed_precision = mixed_precision
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C) or (C, H, W), got {tuple(image_shape)}")
        self.channels_last = channels_last
        self.image_shape = tuple(image_shape)
        channels = image_shape[-1] if channels_last else image_shape[0]
        height, width = image_shape[:2] if channels_last else image_shape[1:]
        convs: list[nn.Module] = [nn.Conv2d(channels, num_filters, 3, stride=2), ReLU()]
        for _ in range(num_layers - 1):
            convs += [nn.Conv2d(num_filters, num_filters, 3, stride=1), ReLU()]
        self.convs = nn.Sequential(*convs)
        with torch.no_grad():
            conv_out = self.convs(torch.zeros(1, channels, height, width)).numel()
        self.conv_out_dim = conv_out
        self.feature_dim = feature_dim
        self.projection = nn.Sequential(nn.Linear(conv_out, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        orthogonal_init_(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        leading = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:])  # (N, H, W, C) or (N, C, H, W)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # (N, C, H, W)
        x = x.float() / 255.0 - 0.5
        linear, norm, tanh = self.projection
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            x = linear(self.convs(x).flatten(1))  # (N, conv_out_dim) -> (N, feature_dim)
        return tanh(norm(x.float())).reshape(*leading, self.feature_dim)

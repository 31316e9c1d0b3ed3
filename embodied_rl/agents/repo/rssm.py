"""The recurrent state-space model (RSSM) of RePo and Dreamer, with its pixel encoder and decoder.

Hafner et al., "Learning Latent Dynamics for Planning from Pixels" (PlaNet, ICML 2019), Sec. 3 and eq. 3;
used unchanged by Dreamer-v1 (Hafner et al., ICLR 2020) and by RePo (Zhu et al., NeurIPS 2023). The
latent state s_t = (h_t, z_t) is a deterministic GRU state h_t and a diagonal-Gaussian stochastic state z_t:

    deterministic     h_t = GRU(h_{t-1}, act(W [z_{t-1}, a_{t-1}]))
    prior             p(z_t | h_t)       = N(mu_p(h_t), sigma_p(h_t))        (the "transition" / dynamics)
    posterior         q(z_t | h_t, o_t)  = N(mu_q(h_t, e_t), sigma_q(h_t, e_t)),  e_t = enc(o_t)
    features          f_t = [h_t, z_t]   (what the reward head, decoder, actor and value see)

Standard deviations are softplus(raw) + `min_std` (0.1 as in the reference code). At an episode start
(`is_first`) the previous state and action are zeros, so h_t = GRU(0, act(W [0, 0])).

Images are channels-last uint8 (..., 64, 64, 3), scaled to [-1, 1] as RePo's reference code does
(Dreamer-v1 uses [-0.5, 0.5]); the decoder predicts images in that scale. Encoder and decoder are Dreamer-v1's
(Appendix A): four 4x4 stride-2 convolutions with depth 32 * (1, 2, 4, 8) -> a 2x2x256 map, 1024 features; the
decoder is a Linear to 32 * depth, then four transposed convolutions (kernels 5, 5, 6, 6; stride 2) -> 64x64x3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embodied_rl.nn.mlp import Activation, activation_class

IMAGE_SIZE = 64  # the Dreamer-v1 encoder and decoder are built for 64x64 images


def preprocess_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 in [-1, 1] (RePo's `preprocess`), same layout."""
    return images.float() * (2.0 / 255.0) - 1.0


class PixelEncoder(nn.Module):
    """uint8 images (..., 64, 64, C) -> embeddings (..., embed_dim): Dreamer-v1's convolutional encoder.

    Four Conv2d(kernel 4, stride 2) with depth * (1, 2, 4, 8) channels and `activation` give a (8 * depth, 2, 2)
    map, flattened to 32 * depth features; a Linear maps them to `embed_dim` unless the two are equal (the paper's
    sizes, depth 32 and embed_dim 1024, need none). `mixed_precision=True` runs the convolutions and that Linear
    under bfloat16 autocast; the embedding is returned in float32.

    This module is all that test-time adaptation fine-tunes (`RePo.encoder`).
    """

    def __init__(
        self,
        depth: int = 32,
        embed_dim: int = 1024,
        channels: int = 3,
        activation: Activation = "relu",
        mixed_precision: bool = False,
    ):
        super().__init__()
        act = activation_class(activation)
        widths = [channels, depth, 2 * depth, 4 * depth, 8 * depth]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2), act()]
        self.convs = nn.Sequential(*layers)
        self.conv_out_dim = 8 * depth * 2 * 2  # 64 -> 31 -> 14 -> 6 -> 2
        self.projection = nn.Identity() if embed_dim == self.conv_out_dim else nn.Linear(self.conv_out_dim, embed_dim)
        self.embed_dim, self.channels, self.mixed_precision = embed_dim, channels, mixed_precision

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        expected = (IMAGE_SIZE, IMAGE_SIZE, self.channels)
        if tuple(images.shape[-3:]) != expected:
            raise ValueError(
                f"PixelEncoder takes (..., {IMAGE_SIZE}, {IMAGE_SIZE}, {self.channels}) images, got "
                f"{tuple(images.shape)}"
            )
        leading = images.shape[:-3]
        x = preprocess_images(images.reshape(-1, *expected)).permute(0, 3, 1, 2)  # (N, C, H, W)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            x = self.projection(self.convs(x).flatten(1))  # (N, 32 * depth) -> (N, embed_dim)
        return x.float().reshape(*leading, self.embed_dim)


class PixelDecoder(nn.Module):
    """Features (..., feature_dim) -> mean image (..., 64, 64, C) in the [-1, 1] scale: Dreamer-v1's decoder.

    Linear to 32 * depth (no activation, as in the reference code), viewed as a 1x1 map, then ConvTranspose2d
    with kernels 5, 5, 6, 6 and stride 2 (channels 4, 2, 1 times depth, then C): 1 -> 5 -> 13 -> 30 -> 64.
    `mixed_precision=True` runs it under bfloat16 autocast; the image is returned in float32.
    """

    def __init__(
        self,
        feature_dim: int,
        depth: int = 32,
        channels: int = 3,
        activation: Activation = "relu",
        mixed_precision: bool = False,
    ):
        super().__init__()
        act = activation_class(activation)
        self.linear = nn.Linear(feature_dim, 32 * depth)
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(32 * depth, 4 * depth, 5, stride=2),
            act(),
            nn.ConvTranspose2d(4 * depth, 2 * depth, 5, stride=2),
            act(),
            nn.ConvTranspose2d(2 * depth, depth, 6, stride=2),
            act(),
            nn.ConvTranspose2d(depth, channels, 6, stride=2),
        )
        self.channels, self.mixed_precision = channels, mixed_precision

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        leading = features.shape[:-1]
        x = features.reshape(-1, features.shape[-1])  # (N, F)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            x = self.deconvs(self.linear(x)[:, :, None, None])  # (N, 32 * depth, 1, 1) -> (N, C, 64, 64)
        x = x.float().permute(0, 2, 3, 1)  # (N, 64, 64, C)
        return x.reshape(*leading, IMAGE_SIZE, IMAGE_SIZE, self.channels)


def gaussian_head(raw: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2S) network output -> mean (..., S) and std = softplus(raw_std) + min_std (..., S)."""
    mean, raw_std = raw.chunk(2, dim=-1)
    return mean, F.softplus(raw_std) + min_std


class PriorStep(nn.Module):
    """One step of the latent dynamics: (h_{t-1}, z_{t-1}, a_{t-1}) -> (h_t, mean and std of p(z_t | h_t)).

    A module of its own so that imagination can run it with detached weights (`torch.func.functional_call`):
    the behaviour losses must not train the world model.
    """

    def __init__(
        self, deter_dim: int, stoch_dim: int, action_dim: int, hidden_dim: int, activation: Activation, min_std: float
    ):
        super().__init__()
        act = activation_class(activation)
        self.input = nn.Sequential(nn.Linear(stoch_dim + action_dim, deter_dim), act())
        self.gru = nn.GRUCell(deter_dim, deter_dim)
        self.prior = nn.Sequential(nn.Linear(deter_dim, hidden_dim), act(), nn.Linear(hidden_dim, 2 * stoch_dim))
        self.min_std = min_std

    def forward(
        self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        deter = self.gru(self.input(torch.cat([stoch, action], dim=-1)), deter)  # (N, D)
        mean, std = gaussian_head(self.prior(deter), self.min_std)  # (N, S) each
        return deter, mean, std


class PosteriorHead(nn.Module):
    """(h_t, e_t) -> mean and std of q(z_t | h_t, o_t)."""

    def __init__(
        self, deter_dim: int, embed_dim: int, stoch_dim: int, hidden_dim: int, activation: Activation, min_std: float
    ):
        super().__init__()
        act = activation_class(activation)
        self.net = nn.Sequential(
            nn.Linear(deter_dim + embed_dim, hidden_dim), act(), nn.Linear(hidden_dim, 2 * stoch_dim)
        )
        self.min_std = min_std

    def forward(self, deter: torch.Tensor, embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gaussian_head(self.net(torch.cat([deter, embed], dim=-1)), self.min_std)


@dataclass
class Latents:
    """An observed sequence's latent states and both distributions over z_t; every tensor (B, L, .)."""

    deter: torch.Tensor  # h_t (B, L, D)
    stoch: torch.Tensor  # z_t ~ q(z_t | h_t, o_t), reparameterised (B, L, S)
    post_mean: torch.Tensor  # (B, L, S)
    post_std: torch.Tensor  # (B, L, S)
    prior_mean: torch.Tensor  # (B, L, S)
    prior_std: torch.Tensor  # (B, L, S)

    @property
    def features(self) -> torch.Tensor:
        """Posterior features f_t = [h_t, z_t] (B, L, D + S)."""
        return torch.cat([self.deter, self.stoch], dim=-1)


class RSSM(nn.Module):
    """PlaNet's recurrent state-space model: `prior_step` (GRU + prior) and `posterior` (filtering) heads."""

    def __init__(
        self,
        action_dim: int,
        embed_dim: int,
        deter_dim: int = 200,
        stoch_dim: int = 30,
        hidden_dim: int = 200,
        activation: Activation = "elu",
        min_std: float = 0.1,
    ):
        super().__init__()
        self.deter_dim, self.stoch_dim, self.action_dim = deter_dim, stoch_dim, action_dim
        self.prior_step = PriorStep(deter_dim, stoch_dim, action_dim, hidden_dim, activation, min_std)
        self.posterior = PosteriorHead(deter_dim, embed_dim, stoch_dim, hidden_dim, activation, min_std)

    @property
    def feature_dim(self) -> int:
        return self.deter_dim + self.stoch_dim

    def initial_state(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, z): (N, D), (N, S)."""
        return (
            torch.zeros(batch_size, self.deter_dim, device=device),
            torch.zeros(batch_size, self.stoch_dim, device=device),
        )

    def observe_step(
        self, deter: torch.Tensor, stoch: torch.Tensor, prev_action: torch.Tensor, embed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One filtering step: h_t from (h_{t-1}, z_{t-1}, a_{t-1}), then z_t ~ q(z_t | h_t, e_t).

        Returns h_t (N, D), z_t (N, S), posterior mean and std, prior mean and std (N, S each).
        """
        deter, prior_mean, prior_std = self.prior_step(deter, stoch, prev_action)
        post_mean, post_std = self.posterior(deter, embed)
        stoch = post_mean + post_std * torch.randn_like(post_mean)
        return deter, stoch, post_mean, post_std, prior_mean, prior_std

    def observe(
        self,
        embed: torch.Tensor,
        prev_action: torch.Tensor,
        is_first: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Latents:
        """Filter a sequence: embeddings (B, L, E), previous actions in [-1, 1] (B, L, A), `is_first` (B, L) bool.

        Where `is_first`, the previous state and action are zeroed (an episode starts there); `state` is the (h, z)
        before the first step (zeros when None, the usual start of a training window).
        """
        batch, length = embed.shape[:2]
        deter, stoch = self.initial_state(batch, embed.device) if state is None else state
        keep = (~is_first).to(embed.dtype).unsqueeze(-1)  # (B, L, 1): 0 where an episode starts
        outputs = []
        for t in range(length):
            deter, stoch = deter * keep[:, t], stoch * keep[:, t]
            step = self.observe_step(deter, stoch, prev_action[:, t] * keep[:, t], embed[:, t])
            deter, stoch = step[0], step[1]
            outputs.append(step)
        stacked = [torch.stack(column, dim=1) for column in zip(*outputs)]  # each (B, L, .)
        return Latents(*stacked)

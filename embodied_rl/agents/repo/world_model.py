"""World-model objectives: RePo's (reward prediction + a KL constraint held by a dual variable) and Dreamer's.

Zhu, Simchowitz, Gadipudi, Gupta, "RePo: Resilient Model-Based Reinforcement Learning by Regularizing Posterior
Predictability", NeurIPS 2023 (arXiv:2309.00082), the method section; the paper's equation numbers are not
reproduced here, (R1)-(R4) are this module's. RePo drops the reconstruction term of Dreamer and instead asks the
posterior to be predictable from the prior, under a bound on the information it takes from the image:

    (R1)  max_{q, p}  E_q[ sum_t log p(r_t | f_t) ]   s.t.   E_q[ sum_t KL(q(z_t | h_t, o_t) || p(z_t | h_t)) ] <= eps

solved through its Lagrangian with the multiplier beta >= 0 updated by dual gradient ascent, here on log beta so
that beta stays positive (as the reference code `algorithms/repo/repo.py` does):

    (R2)  model loss   L(q, p) = -log p(r_t | f_t) + sg(beta) * (KL_bal - eps)
    (R3)  dual loss    L(beta) = -log beta * sg(KL_bal - eps)   (raises beta while KL > eps, lowers it while KL < eps)
    (R4)  balanced KL  KL_bal  = a * KL(sg(q) || p) + (1 - a) * KL(q || sg(p))

with eps = `target_kl` (3 nats), beta_0 = 1e-5 and a = `kl_balance` = 5/6: the reference code trains the prior
`prior_train_steps` = 5 times as fast as the posterior, a = 5 / (1 + 5). The reward likelihood is a unit-variance
Gaussian, from the posterior features f_t = [h_t, z_t]. There is no reconstruction gradient into the model; an
optional decoder (`train_decoder`) learns to reconstruct the image from *detached* features, for pictures only.

Dreamer's objective (Hafner et al. 2020, eq. 10; the same code, `objective="dreamer"`) is the ELBO with free nats:

    L = -log p(o_t | f_t) - log p(r_t | f_t) + kl_scale * max(KL(q || p), free_nats)

with unit-variance Gaussian image and reward likelihoods; the free-nats floor is taken per step before the mean,
as RePo's reference `dreamer.py` does (Dreamer-v1 takes it after the mean). Likelihoods are written without their
additive constants (0.5 log 2 pi per dimension), which change no gradient.

Data layout (`embodied_rl.data.sequences`): row t holds o_t, the action a_{t-1} that led to it and the reward
r_{t-1} received on arriving there, so the posterior at row t predicts the reward of row t. Rows with `is_first`
carry no reward (zeros by convention) and are left out of the reward loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodied_rl.agents.repo.rssm import RSSM, Latents, PixelDecoder, PixelEncoder, preprocess_images
from embodied_rl.nn import mlp
from embodied_rl.nn.mlp import Activation

OBJECTIVES = ("repo", "dreamer")


def gaussian_kl(mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_q, std_q) || N(mean_p, std_p)) of diagonal Gaussians, summed over the last dim: (...,)."""
    var_ratio = (std_q / std_p).square()
    mahalanobis = ((mean_q - mean_p) / std_p).square()
    return 0.5 * (var_ratio + mahalanobis - 1.0 - var_ratio.log()).sum(-1)


def balanced_kl(latents: Latents, balance: float) -> torch.Tensor:
    """KL balancing (R4) (RePo; Hafner et al. 2021, DreamerV2 Algorithm 2), per step (B, L):

        balance * KL(sg(q) || p) + (1 - balance) * KL(q || sg(p))

    Its value is KL(q || p); `balance` is the share of the gradient that trains the prior.
    """
    post_mean, post_std = latents.post_mean, latents.post_std
    prior_mean, prior_std = latents.prior_mean, latents.prior_std
    train_prior = gaussian_kl(post_mean.detach(), post_std.detach(), prior_mean, prior_std)
    train_posterior = gaussian_kl(post_mean, post_std, prior_mean.detach(), prior_std.detach())
    return balance * train_prior + (1.0 - balance) * train_posterior


def reward_nll(predicted: torch.Tensor, reward: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
    """-log N(r_t; r_hat_t, 1) up to its constant, averaged over the rows that carry a reward (not `is_first`)."""
    mask = (~is_first).to(reward.dtype)  # (B, L)
    return 0.5 * ((predicted - reward).square() * mask).sum() / mask.sum().clamp(min=1.0)


def image_nll(predicted: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log N(o_t; o_hat_t, I) up to its constant: summed over pixels and channels, averaged over (B, L).
    `predicted` in the [-1, 1] scale (B, L, 64, 64, 3); `images` uint8 (B, L, 64, 64, 3)."""
    return 0.5 * (predicted - preprocess_images(images)).square().sum((-3, -2, -1)).mean()


class DualVariable(nn.Module):
    """The Lagrange multiplier beta = exp(log_beta) of RePo's KL constraint (R1), trained by its own Adam."""

    def __init__(self, init_beta: float):
        super().__init__()
        self.log_beta = nn.Parameter(torch.tensor(math.log(init_beta)))

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.detach().exp()


class WorldModel(nn.Module):
    """Encoder, RSSM, reward head and (for Dreamer, or RePo with `train_decoder`) image decoder.

    `loss(obs, prev_action, reward, is_first, dual)` is the objective of `objective` ("repo" or "dreamer") for a
    batch of sequences, read top to bottom in `repo_loss` / `dreamer_loss`.
    """

    def __init__(
        self,
        action_dim: int,
        *,
        objective: str = "repo",
        embed_dim: int = 1024,
        cnn_depth: int = 32,
        deter_dim: int = 200,
        stoch_dim: int = 30,
        hidden_dim: int = 200,
        reward_layers: int = 3,
        dense_activation: Activation = "elu",
        cnn_activation: Activation = "relu",
        min_std: float = 0.1,
        train_decoder: bool = False,
        target_kl: float = 3.0,
        kl_balance: float = 5.0 / 6.0,
        free_nats: float = 3.0,
        kl_scale: float = 1.0,
        mixed_precision: bool = False,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        self.target_kl, self.kl_balance = target_kl, kl_balance
        self.free_nats, self.kl_scale = free_nats, kl_scale
        self.encoder = PixelEncoder(cnn_depth, embed_dim, 3, cnn_activation, mixed_precision)
        self.rssm = RSSM(action_dim, embed_dim, deter_dim, stoch_dim, hidden_dim, dense_activation, min_std)
        feature_dim = self.rssm.feature_dim
        self.reward_head = mlp(feature_dim, [hidden_dim] * reward_layers, 1, dense_activation)
        self.has_decoder = objective == "dreamer" or train_decoder
        self.decoder = (
            PixelDecoder(feature_dim, cnn_depth, 3, cnn_activation, mixed_precision) if self.has_decoder else None
        )

    def observe(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        is_first: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Latents:
        """Encode and filter a sequence: uint8 obs (B, L, 64, 64, 3), previous actions in [-1, 1] (B, L, A),
        `is_first` (B, L) bool -> `Latents` (B, L, .), with gradients."""
        embed = self.encoder(obs)  # (B, L, E)
        return self.rssm.observe(embed, prev_action, is_first, state)

    def predict_reward(self, features: torch.Tensor) -> torch.Tensor:
        """Mean of p(r_t | f_t): (..., F) -> (...,)."""
        return self.reward_head(features).squeeze(-1)

    def loss(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        reward: torch.Tensor,
        is_first: torch.Tensor,
        dual: DualVariable | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Latents]:
        """The objective's loss (for RePo plus the dual variable's loss; the two touch disjoint parameters), its
        metrics (detached) and the posterior latents."""
        latents = self.observe(obs, prev_action, is_first)
        if self.objective == "repo":
            loss, metrics = self.repo_loss(latents, obs, reward, is_first, dual)
        else:
            loss, metrics = self.dreamer_loss(latents, obs, reward, is_first)
        return loss, metrics, latents

    def repo_loss(
        self,
        latents: Latents,
        obs: torch.Tensor,
        reward: torch.Tensor,
        is_first: torch.Tensor,
        dual: DualVariable,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """RePo's Lagrangian (R2) with KL balancing (R4), plus the dual-ascent loss (R3) of log beta:

        L_model = -log p(r_t | f_t) + sg(beta) * (KL_bal - target_kl)  [+ image NLL of the decoder on sg(f_t)]
        L_dual  = -log_beta * sg(KL_bal - target_kl)
        """
        features = latents.features  # (B, L, F)
        reward_loss = reward_nll(self.predict_reward(features), reward, is_first)
        kl = balanced_kl(latents, self.kl_balance).mean()  # (B, L) -> ()
        kl_violation = kl - self.target_kl
        model_loss = reward_loss + dual.log_beta.exp().detach() * kl_violation
        dual_loss = -dual.log_beta * kl_violation.detach()
        metrics = {
            "model_loss": model_loss.detach(),
            "reward_loss": reward_loss.detach(),
            "kl": kl.detach(),
            "beta_loss": dual_loss.detach(),
        }
        loss = model_loss + dual_loss
        if self.decoder is not None:  # a probe: trained on detached features, no gradient into encoder / RSSM
            decoder_loss = image_nll(self.decoder(features.detach()), obs)
            metrics["decoder_loss"] = decoder_loss.detach()
            loss = loss + decoder_loss
        return loss, metrics

    def dreamer_loss(
        self, latents: Latents, obs: torch.Tensor, reward: torch.Tensor, is_first: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Dreamer-v1, eq. 10 (reconstruction objective) with free nats, as RePo's reference `dreamer.py`:

        L = -log p(o_t | f_t) - log p(r_t | f_t) + kl_scale * mean_{B, L} max(KL(q || p), free_nats)
        """
        features = latents.features  # (B, L, F)
        decoder_loss = image_nll(self.decoder(features), obs)
        reward_loss = reward_nll(self.predict_reward(features), reward, is_first)
        kl_per_step = gaussian_kl(latents.post_mean, latents.post_std, latents.prior_mean, latents.prior_std)
        kl_loss = self.kl_scale * kl_per_step.clamp(min=self.free_nats).mean()
        loss = decoder_loss + reward_loss + kl_loss
        metrics = {
            "model_loss": loss.detach(),
            "reward_loss": reward_loss.detach(),
            "decoder_loss": decoder_loss.detach(),
            "kl": kl_per_step.mean().detach(),
            "kl_loss": kl_loss.detach(),
        }
        return loss, metrics

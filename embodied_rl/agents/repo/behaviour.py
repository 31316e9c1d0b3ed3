"""Behaviour learning in imagination: Dreamer-v1's actor-critic, as RePo uses it (Zhu et al. 2023).

Hafner, Lillicrap, Ba, Norouzi, "Dream to Control: Learning Behaviors by Latent Imagination", ICLR 2020. From
every posterior state of the training batch (detached: the behaviour losses never train the world model), the
actor imagines `horizon` steps with the prior dynamics; with the reward head's predictions r_t and the value
net's v_t along the way,

    imagination       a_t ~ pi(a | sg(f_t)),  h_{t+1}, z_{t+1} ~ p(. | h_t, z_t, a_t),  t = 0 .. H-1
    lambda-return     V_t = r_t + gamma * ((1 - lambda) * v_{t+1} + lambda * V_{t+1}),  V_H = v_H     (eq. 6)
    actor             J_pi = -mean_{t=1..H-1} V_t - eta * H[pi]        (eq. 7, through the dynamics)
    value             J_v  = mean_{t=1..H-1} 1/2 (v(sg(f_t)) - sg(V_t))^2                       (eq. 8)

The actor's gradient reaches its parameters through the reparameterised actions and the differentiable
dynamics ("dynamics backpropagation"); the world model and the value net are evaluated with detached weights
there. As in Dreamer-v1 and RePo's reference code the actor sees detached features, the discount is a constant
gamma (no continuation head), r_t is the reward of arriving at s_t, and V_t is not weighted by the cumulative
discount. The entropy H[pi] is estimated by -log pi(a_t | s_t) of the sampled actions (one sample per state;
the reference code averages 100).

Actor head (reference code): 4 ELU layers of 200, then mean = 5 tanh(mu / 5), std = softplus(raw + init_std)
+ 0.1, a tanh-squashed Normal. Value head: 3 ELU layers of 200.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embodied_rl.nn import TanhNormal, mlp
from embodied_rl.nn.mlp import Activation


class Actor(nn.Module):
    """Features (..., F) -> tanh-squashed diagonal Normal over [-1, 1]^A (Dreamer-v1's action model)."""

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dim: int = 200,
        num_layers: int = 4,
        activation: Activation = "elu",
        mean_scale: float = 5.0,
        min_std: float = 0.1,
        init_std: float = 0.0,
    ):
        super().__init__()
        self.net = mlp(feature_dim, [hidden_dim] * num_layers, 2 * action_dim, activation)
        self.mean_scale, self.min_std, self.init_std = mean_scale, min_std, init_std

    def forward(self, features: torch.Tensor) -> TanhNormal:
        raw_mean, raw_std = self.net(features).chunk(2, dim=-1)  # (..., A) each
        mean = self.mean_scale * torch.tanh(raw_mean / self.mean_scale)
        std = F.softplus(raw_std + self.init_std) + self.min_std
        return TanhNormal(mean, std)


class ValueNet(nn.Module):
    """Features (..., F) -> v(s) (...,)."""

    def __init__(self, feature_dim: int, hidden_dim: int = 200, num_layers: int = 3, activation: Activation = "elu"):
        super().__init__()
        self.net = mlp(feature_dim, [hidden_dim] * num_layers, 1, activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def lambda_returns(
    rewards: torch.Tensor, next_values: torch.Tensor, discount: float | torch.Tensor, lambda_: float
) -> torch.Tensor:
    """TD(lambda) returns of Dreamer-v1 eq. 6, time-major, computed backwards:

        V_t = r_t + discount * ((1 - lambda) * v_{t+1} + lambda * V_{t+1}),   V_{T-1} = r_{T-1} + discount * v_T

    `rewards` (T, N): r_t; `next_values` (T, N): v_{t+1}, so next_values[-1] is the bootstrap v_T; `discount` a
    float or (T, N). Returns V_t (T, N). lambda = 0 gives one-step TD targets, lambda = 1 Monte-Carlo returns
    bootstrapped at T.
    """
    discount = torch.as_tensor(discount, dtype=rewards.dtype, device=rewards.device).expand_as(rewards)
    blended = rewards + discount * (1.0 - lambda_) * next_values  # the part that does not recurse
    returns = []
    last = next_values[-1]  # V_T = v_T
    for t in reversed(range(rewards.shape[0])):
        last = blended[t] + discount[t] * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1])  # (T, N)


@dataclass
class Imagination:
    """States of imagined rollouts and the log-probabilities of the actions taken."""

    features: torch.Tensor  # f_0 .. f_H (H + 1, N, F); f_0 is the (detached) start state
    log_probs: torch.Tensor  # log pi(a_t | s_t), t = 0 .. H-1 (H, N)


def imagine(
    prior_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
    actor: Actor,
    deter: torch.Tensor,
    stoch: torch.Tensor,
    horizon: int,
) -> Imagination:
    """Roll the prior dynamics `horizon` steps from (h_0, z_0) (N, D), (N, S) with actions from `actor`.

    `prior_step(h, z, a) -> (h', prior mean, prior std)` is the RSSM's, normally called with detached weights;
    z' = mean + std * eps is reparameterised, so gradients flow from later states back to earlier actions. The
    actor sees detached features (Dreamer-v1's `imagine_ahead`).
    """
    features = [torch.cat([deter, stoch], dim=-1)]  # (N, F)
    log_probs = []
    for _ in range(horizon):
        action, log_prob = actor(features[-1].detach()).rsample_with_log_prob()  # (N, A), (N,)
        deter, mean, std = prior_step(deter, stoch, action)
        stoch = mean + std * torch.randn_like(mean)
        features.append(torch.cat([deter, stoch], dim=-1))
        log_probs.append(log_prob)
    return Imagination(torch.stack(features), torch.stack(log_probs))  # (H + 1, N, F), (H, N)


def actor_loss(
    imagination: Imagination,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    value_fn: Callable[[torch.Tensor], torch.Tensor],
    gamma: float,
    lambda_: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Dreamer-v1 eq. 7 with an entropy bonus: J_pi = -mean V_t - entropy_coef * H[pi], H[pi] ~ -mean log pi.

    `reward_fn` and `value_fn` map features (..., F) to (...,) with detached weights. Returns the loss, the
    lambda-returns V_1 .. V_{H-1} (H - 1, N) (with their graph; detach for the value loss) and detached metrics.
    """
    features = imagination.features[1:]  # f_1 .. f_H (H, N, F)
    rewards = reward_fn(features)  # (H, N)
    values = value_fn(features)  # (H, N)
    returns = lambda_returns(rewards[:-1], values[1:], gamma, lambda_)  # (H - 1, N)
    entropy = -imagination.log_probs.mean()
    loss = -returns.mean() - entropy_coef * entropy
    metrics = {
        "actor_loss": loss.detach(),
        "entropy": entropy.detach(),
        "imagined_reward": rewards.mean().detach(),
        "imagined_return": returns.mean().detach(),
    }
    return loss, returns, metrics


def value_loss(value: ValueNet, features: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Dreamer-v1 eq. 8: 1/2 (v(sg(f_t)) - sg(V_t))^2 averaged; features (T, N, F), returns (T, N)."""
    predicted = value(features.detach())  # (T, N)
    loss = 0.5 * (predicted - returns.detach()).square().mean()
    return loss, {"value_loss": loss.detach(), "value_mean": predicted.mean().detach()}

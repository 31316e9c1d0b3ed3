"""A deliberately plain, eager SAC, used ONLY as the speed baseline in scripts/benchmark.py.

Written the way a typical single-file implementation is (CleanRL's `sac_continuous_action.py` style, the
baseline LeanRL measured its speed-ups against): two separate `nn.Linear` Q-networks and their targets, a
tanh-Gaussian actor, automatic entropy tuning, three Adam optimisers stepped one after the other, a Python
loop for the Polyak update, and `.item()` on every loss at every step (a host sync per loss). Same losses
and network sizes as `embodied_rl.agents.SAC` (Haarnoja et al. 2018). One difference in work, as in CleanRL:
the actor loss backpropagates through the live critics, computing their weight gradients too (discarded by the
next critic step), which ours skips; that is 13 % more arithmetic per update (693 vs 614 MFLOP at batch 256,
2x256, 39-d states). Do not train with it: use `embodied_rl.agents.SAC`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


class _Actor(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: int):
        super().__init__()
        self.net = _mlp(obs_dim, hidden, 2 * action_dim)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = -5.0 + 0.5 * 7.0 * (torch.tanh(log_std) + 1)  # into [-5, 2]
        normal = torch.distributions.Normal(mean, log_std.exp())
        x = normal.rsample()
        action = torch.tanh(x)
        log_prob = (normal.log_prob(x) - torch.log(1 - action.pow(2) + 1e-6)).sum(-1)
        return action, log_prob


class PlainSAC:
    """Plain eager SAC (benchmark baseline only). `update(batch)` -> dict of floats."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: int = 256,
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        device: str = "cpu",
    ):
        self.gamma, self.tau = gamma, tau
        self.q1 = _mlp(obs_dim + action_dim, hidden, 1).to(device)
        self.q2 = _mlp(obs_dim + action_dim, hidden, 1).to(device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = _Actor(obs_dim, action_dim, hidden).to(device)
        self.log_alpha = torch.zeros(1, requires_grad=True, device=device)
        self.target_entropy = -float(action_dim)
        self.q_optimizer = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        next_obs, terminated = batch["next_obs"], batch["terminated"]
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            next_in = torch.cat([next_obs, next_action], -1)
            next_q = torch.min(self.q1_target(next_in), self.q2_target(next_in)).squeeze(-1)
            target = reward + (1 - terminated) * self.gamma * (next_q - alpha * next_log_prob)
        q_in = torch.cat([obs, action], -1)
        q_loss = F.mse_loss(self.q1(q_in).squeeze(-1), target) + F.mse_loss(self.q2(q_in).squeeze(-1), target)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()

        new_action, log_prob = self.actor.sample(obs)
        pi_in = torch.cat([obs, new_action], -1)
        actor_loss = (alpha * log_prob - torch.min(self.q1(pi_in), self.q2(pi_in)).squeeze(-1)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = (-self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for net, target_net in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), target_net.parameters()):
                    tp.data.copy_(self.tau * p.data + (1 - self.tau) * tp.data)
        return {
            "critic_loss": q_loss.item(),
            "actor_loss": actor_loss.item(),
            "alpha_loss": alpha_loss.item(),
            "alpha": alpha,
        }

"""TD3+BC.

Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021 (arXiv:2106.06860):
TD3 (Fujimoto, van Hoof, Meger 2018) with a behaviour-cloning term in the actor loss and normalised states;
equation numbers refer to the TD3+BC paper, the critic update to TD3's Algorithm 1.

For a minibatch (s, a, r, s', d) from the dataset, d = 1 when s' is terminal, actions in [-1, 1]^A:

    target policy smoothing (TD3)   a' = clip(pi_target(s') + clip(eps, -c, c), -1, 1),  eps ~ N(0, sigma^2)
    clipped double Q (TD3)          y = r + gamma * (1 - d) * min_i Q_target_i(s', a')
    critic                          J_Q = sum_i E[ (Q_i(s, a) - y)^2 ]
    actor (eq. 3, 4), every `policy_update_every` updates
                                    J_pi = E[ -lambda * Q_1(s, pi(s)) + (pi(s) - a)^2 ],
                                    lambda = alpha / mean_B |Q_1(s, pi(s))|  (no gradient through lambda)
    target networks, on actor steps theta_target <- (1 - tau) * theta_target + tau * theta

Defaults are the paper's: sigma = 0.2, c = 0.5, policy update every 2, alpha = 2.5, Adam with lr 3e-4,
two hidden layers of 256 ReLU units, gamma 0.99, tau 0.005 (batch size 256 is the trainer's).

Choices and deviations, all deliberate:
- Actions are rescaled to [-1, 1]^A, so sigma and c are in that space (the reference scales them by
  max_action, the same thing for symmetric bounds). (pi(s) - a)^2 is averaged over batch and action dims
  (the reference's `F.mse_loss`).
- State normalisation (eq. 5) happens inside the agent with dataset statistics (`fit_normalizer`), so
  `act` takes raw observations; std is `ObservationNormalizer`'s (dimensions with std < 1e-3 get 1),
  where the reference adds 1e-3 to every std.
- The Q-functions are one vectorised ensemble (`num_critics`, default 2, min over all members); the actor
  uses Q_1 as the reference does, evaluated with detached critic weights.
- The policy is deterministic; `act(obs, deterministic)` ignores the flag (no exploration noise offline).
- Truncated episodes bootstrap: only `terminated` cuts the target.

Speed: no host sync in `update` (the delayed actor step is decided by a Python counter); `compile=True`
makes the critic step and the actor + Polyak step one compiled graph each (`FunctionalStep`);
`cudagraphs=True` (CUDA only) captures the same two steps as two CUDA graphs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from embodied_rl.agents.common import (
    Critic,
    detached_parameters,
    make_adam,
    maybe_cuda_graph,
)
from embodied_rl.agents.functional_step import training_step
from embodied_rl.agents.offline import DeterministicActor, OfflineAgentBase
from embodied_rl.validation import check_ranges

# Allowed values of the hyperparameters (embodied_rl.validation.in_range)
TD3BC_RANGES = {
    **dict.fromkeys(("num_critics", "policy_update_every"), ">= 1"),
    **dict.fromkeys(("actor_lr", "critic_lr"), "> 0"),
    **dict.fromkeys(("policy_noise", "noise_clip", "alpha"), ">= 0"),
    "gamma": "[0, 1]",
    "tau": "(0, 1]",
}


class TD3BC(OfflineAgentBase):
    """TD3+BC for state observations and Box actions (see the module docstring).

    `TD3BC(observation_space, action_space, **hparams)`; `fit_normalizer(dataset_obs)` once before training;
    `update(batch)` takes a dict or a `Transitions` with obs, action, reward, next_obs, terminated (tensors
    on the agent's device, raw observations) and returns detached scalar tensors: critic_loss, q_mean,
    target_q_mean, and from the latest actor step actor_loss, bc_loss, lambda.
    """

    name = "TD3BC"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        num_critics: int = 2,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_update_every: int = 2,
        alpha: float = 2.5,
        normalize_obs: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        cudagraphs: bool = False,
        device: str | torch.device = "cpu",
    ):
        check_ranges("hyperparameters", locals(), TD3BC_RANGES)  # locals() here: the arguments
        self.hidden_dims, self.activation, self.num_critics = tuple(hidden_dims), activation, num_critics
        self.actor_lr, self.critic_lr, self.gamma, self.tau = actor_lr, critic_lr, gamma, tau
        self.policy_noise, self.noise_clip, self.policy_update_every = policy_noise, noise_clip, policy_update_every
        self.alpha = alpha
        self._init_base(observation_space, action_space, normalize_obs, compile, compile_mode, cudagraphs, device)

    # ------------------------------------------------------------------ construction
    def _build_networks(self) -> None:
        device, dims = self.device, (self.hidden_dims, self.activation)
        self.actor = DeterministicActor(self.obs_dim, self.action_dim, *dims).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(self.obs_dim, self.action_dim, *dims, self.num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = make_adam(self.actor.parameters(), self.actor_lr, self._capturable)
        self.critic_optimizer = make_adam(self.critic.parameters(), self.critic_lr, self._capturable)

    def _setup_steps(self) -> None:
        """Wrap the update steps (see SAC._setup_steps); re-run after the optimiser state is replaced. The actor
        step ends with the Polyak step of both target networks (TD3's delayed update)."""
        how = {"compile": self.compile, "compile_mode": self.compile_mode}
        critic = training_step([(self.critic, self.critic_optimizer)], self._critic_forward, **how)
        targets = [(self.critic_target, self.critic, self.tau), (self.actor_target, self.actor, self.tau)]
        actor = training_step([(self.actor, self.actor_optimizer)], self._actor_forward, targets, **how)

        def critic_step(*batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
            (metrics, obs, action), _ = critic(*batch)
            return metrics, obs, action

        def actor_step(obs: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
            return actor(obs, action)[0]

        self._critic_step = maybe_cuda_graph(critic_step, self.cudagraphs, self.device)
        self._actor_step = maybe_cuda_graph(actor_step, self.cudagraphs, self.device)
        self._last_actor_metrics: dict[str, torch.Tensor] = {}

    def _modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

    # ------------------------------------------------------------------ losses (normalised obs, actions in [-1, 1])
    def critic_loss(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped double-Q regression with target policy smoothing (TD3, Algorithm 1):
        J_Q = sum_i mean_B (Q_i(s, a) - y)^2. obs, next_obs (B, S); action (B, A); reward, terminated (B,)."""
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)  # (B, A)
            next_q = self.critic_target(next_obs, next_action).min(dim=0).values  # (E, B) -> (B,)
            target_q = reward + self.gamma * (1.0 - terminated) * next_q
        q = self.critic(obs, action)  # (E, B)
        loss = (q - target_q).square().mean(dim=1).sum()
        return loss, {"q_mean": q.detach().mean(), "target_q_mean": target_q.mean()}

    def actor_loss(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fujimoto & Gu eq. 3 / 4: -lambda * mean_B Q_1(s, pi(s)) + mean (pi(s) - a)^2, with
        lambda = alpha / mean_B |Q_1(s, pi(s))| detached. The critic's weights get no gradient."""
        pi = self.actor(obs)  # (B, A)
        q = torch.func.functional_call(self.critic, detached_parameters(self.critic), (obs, pi))[0]  # (B,)
        lmbda = self.alpha / q.abs().mean().detach()
        bc_loss = (pi - action).square().mean()
        loss = -lmbda * q.mean() + bc_loss
        return loss, {"actor_loss": loss.detach(), "bc_loss": bc_loss.detach(), "lambda": lmbda}

    # ------------------------------------------------------------------ update steps
    def _critic_forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
        """Normalise, critic loss. Returns the loss and (metrics, the normalised obs and [-1, 1] actions for the
        actor step)."""
        obs, next_obs, action = self.normalize(obs), self.normalize(next_obs), self.to_unit_action(action)
        loss, metrics = self.critic_loss(obs, action, reward, next_obs, terminated)
        metrics["critic_loss"] = loss.detach()
        return loss, (metrics, obs, action)

    def _actor_forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.actor_loss(obs, action)

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One TD3+BC update: a critic step, and on every `policy_update_every`-th update an actor step and
        the target updates. Detached scalar tensors out; no host synchronisation."""
        fields = self._fields(batch)
        metrics, obs, action = self._critic_step(
            fields["obs"], fields["action"], fields["reward"], fields["next_obs"], fields["terminated"]
        )
        self.num_updates += 1
        if self.num_updates % self.policy_update_every == 0:
            self._last_actor_metrics = self._actor_step(obs, action)
        return {**metrics, **self._last_actor_metrics}

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)

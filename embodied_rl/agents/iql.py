"""Implicit Q-Learning.

Kostrikov, Nair, Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022
(arXiv:2110.06169); equation numbers below refer to it. Hyperparameters and the actor follow CORL's
single-file IQL (Tarasov et al. 2022), the reference most results are compared against.

Objectives, for a minibatch (s, a, r, s', d) from the dataset, d = 1 when s' is terminal:

    value, expectile regression (eq. 5)
        u = min_i Q_target_i(s, a) - V(s),   L_V = E[ |tau - 1(u < 0)| * u^2 ]
    Q-functions (eq. 6)
        L_Q = E[ (r + gamma * (1 - d) * V(s') - Q_i(s, a))^2 ],  averaged over the critics i
    actor, advantage-weighted regression (eq. 7)
        L_pi = -E[ min(exp(beta * (min_i Q_target_i(s, a) - V(s))), max_weight) * log pi(a|s) ]
    target networks  theta_target <- (1 - tau_polyak) * theta_target + tau_polyak * theta

The constructor's `expectile` is the paper's tau (0.7) and `beta` its inverse temperature (3.0), both as in
the paper's locomotion runs; `tau` is the Polyak rate. Defaults otherwise: two hidden layers of 256 ReLU
units, Adam with lr 3e-4 for all three networks, gamma 0.99, Polyak 0.005 (batch size 256 is the trainer's).

Choices and deviations, all deliberate:
- Policy: N(tanh(f(s)), sigma^2) over the actions rescaled to [-1, 1]^A: only the mean is squashed, and
  log sigma is one learned state-independent vector clipped to [-20, 2] (CORL's `GaussianPolicy`).
  log pi(a|s) is the Gaussian density of the dataset action (no tanh correction, so actions on the
  bounds are fine). `act(deterministic=True)` returns the mean, `act()` a sample clipped to the bounds.
- The three losses use the networks as they are before the update (as CORL: V(s') for the Q target and
  the advantage for the actor are computed before the value step), and touch disjoint parameters, so
  their sum is differentiated in one backward pass; each optimiser then steps on its own network. This
  is the same update as CORL's three sequential steps, with one pass instead of three.
- The Q-functions are one vectorised ensemble (`num_critics`, default 2) and the minimum is over all of
  them; each critic's squared error is averaged, as in CORL.
- Observations are normalised inside the agent with dataset statistics (`fit_normalizer`), so that
  `act` takes raw environment observations; CORL normalises the dataset and wraps the env instead.
- Optional cosine decay of the actor's learning rate over `actor_lr_schedule_steps` updates (CORL's
  `CosineAnnealingLR(T_max=max_timesteps)`), held at 0 after that. The rate lives in a tensor that is
  filled from the Python update counter outside the step, so it costs no host sync and works inside a
  CUDA graph.
- Truncated episodes bootstrap: only `terminated` cuts the target.

Speed: no host sync in `update`; it returns detached tensors. `compile=True` compiles the whole step
(gradients by torch.func, the three Adam steps and the Polyak update: `FunctionalStep`) into one graph; the
optimisers keep their state, so checkpoints are the same with and without it. `cudagraphs=True` (CUDA only)
captures the step in a CUDA graph after three warm-up calls. See README "Speed" for the figures.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from embodied_rl.agents.common import Critic, make_adam, maybe_cuda_graph
from embodied_rl.agents.functional_step import training_step
from embodied_rl.agents.offline import GaussianActor, OfflineAgentBase
from embodied_rl.nn import mlp
from embodied_rl.validation import check_ranges


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss of Kostrikov et al. (ICLR 2022), eq. 5: mean of |tau - 1(u < 0)| * u^2, u = `diff`.

    With tau = 0.5 it is half the mean squared error; tau -> 1 pushes V towards the maximum of Q over the
    dataset's actions."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


# Allowed values of the hyperparameters (embodied_rl.validation.in_range)
IQL_RANGES = {
    "num_critics": ">= 1",
    **dict.fromkeys(("actor_lr", "critic_lr", "value_lr", "max_weight"), "> 0"),
    "gamma": "[0, 1]",
    "tau": "(0, 1]",
    "expectile": "(0, 1)",
    "beta": ">= 0",  # the inverse temperature; 0 is behaviour cloning
    "actor_lr_schedule_steps": "None or >= 1",
}


class IQL(OfflineAgentBase):
    """Implicit Q-Learning for state observations and Box actions (see the module docstring).

    `IQL(observation_space, action_space, **hparams)`; `fit_normalizer(dataset_obs)` once before training;
    `update(batch)` takes a dict or a `Transitions` with obs, action, reward, next_obs, terminated (tensors
    on the agent's device, raw observations) and returns detached scalar tensors: value_loss, critic_loss,
    actor_loss, v_mean, q_mean, advantage_mean, weight_mean. `act(obs, deterministic)` takes raw
    observations, one or a batch.
    """

    name = "IQL"

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
        value_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        beta: float = 3.0,
        max_weight: float = 100.0,
        log_std_bounds: Sequence[float] = (-20.0, 2.0),
        actor_lr_schedule_steps: int | None = None,
        normalize_obs: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        cudagraphs: bool = False,
        device: str | torch.device = "cpu",
    ):
        check_ranges("hyperparameters", locals(), IQL_RANGES)  # locals() here: the arguments
        self.hidden_dims, self.activation, self.num_critics = tuple(hidden_dims), activation, num_critics
        self.actor_lr, self.critic_lr, self.value_lr = actor_lr, critic_lr, value_lr
        self.gamma, self.tau, self.expectile, self.beta, self.max_weight = gamma, tau, expectile, beta, max_weight
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self.actor_lr_schedule_steps = actor_lr_schedule_steps
        self._init_base(observation_space, action_space, normalize_obs, compile, compile_mode, cudagraphs, device)

    # ------------------------------------------------------------------ construction
    def _build_networks(self) -> None:
        device, dims = self.device, (self.hidden_dims, self.activation)
        self.critic = Critic(self.obs_dim, self.action_dim, *dims, self.num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(self.obs_dim, self.hidden_dims, 1, self.activation).to(device)
        self.actor = GaussianActor(self.obs_dim, self.action_dim, *dims, self.log_std_bounds).to(device)
        # With a schedule the actor's rate is a tensor, refilled before every step (see _setup_steps).
        self._actor_lr_tensor = torch.tensor(float(self.actor_lr), device=device)
        scheduled = self.actor_lr_schedule_steps is not None
        actor_lr = self._actor_lr_tensor if scheduled else self.actor_lr
        self.critic_optimizer = make_adam(self.critic.parameters(), self.critic_lr, self._capturable)
        self.value_optimizer = make_adam(self.value.parameters(), self.value_lr, self._capturable)
        self.actor_optimizer = make_adam(self.actor.parameters(), actor_lr, self._capturable)

    def _setup_steps(self) -> None:
        """Wrap the update step (see SAC._setup_steps). Re-run after the optimiser state is replaced: it also
        points the actor optimiser back at the learning-rate tensor that `update` refills."""
        scheduled = self.actor_lr_schedule_steps is not None
        self.actor_optimizer.param_groups[0]["lr"] = self._actor_lr_tensor if scheduled else self.actor_lr
        if scheduled:
            self._actor_lr_tensor.fill_(self.scheduled_actor_lr(self.num_updates))
        trained = [
            (self.value, self.value_optimizer),
            (self.critic, self.critic_optimizer),
            (self.actor, self.actor_optimizer),
        ]  # one step for all three (`compile`: one graph, see embodied_rl.agents.functional_step), then Polyak
        polyak = [(self.critic_target, self.critic, self.tau)]
        step = training_step(trained, self._forward, polyak, compile=self.compile, compile_mode=self.compile_mode)
        self._step = maybe_cuda_graph(lambda *batch: step(*batch)[0], self.cudagraphs, self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"critic": self.critic, "critic_target": self.critic_target, "value": self.value, "actor": self.actor}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "critic_optimizer": self.critic_optimizer,
            "value_optimizer": self.value_optimizer,
            "actor_optimizer": self.actor_optimizer,
        }

    def scheduled_actor_lr(self, step: int) -> float:
        """Cosine decay from actor_lr to 0 over `actor_lr_schedule_steps` updates (CosineAnnealingLR's closed
        form with eta_min = 0); the rate of update number `step` (0-based). A Python float: no device work."""
        if self.actor_lr_schedule_steps is None:
            return self.actor_lr
        progress = min(step, self.actor_lr_schedule_steps) / self.actor_lr_schedule_steps
        return self.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    # ------------------------------------------------------------------ losses (normalised obs, actions in [-1, 1])
    def value_loss(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expectile regression of V(s) onto min_i Q_target_i(s, a), Kostrikov et al. eq. 5. Returns the loss,
        the advantage u = min_i Q_target_i(s, a) - V(s) (B,), reused by the actor loss, and V(s) (B,), both
        detached."""
        with torch.no_grad():
            target_q = self.critic_target(obs, action).min(dim=0).values  # (E, B) -> (B,)
        v = self.value(obs).squeeze(-1)  # (B,)
        diff = target_q - v
        return expectile_loss(diff, self.expectile), diff.detach(), v.detach()

    def critic_loss(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TD regression onto r + gamma * (1 - d) * V(s'), Kostrikov et al. eq. 6, averaged over the critics.
        Returns the loss and Q(s, a) (E, B), detached."""
        with torch.no_grad():
            target = reward + self.gamma * (1.0 - terminated) * self.value(next_obs).squeeze(-1)  # (B,)
        q = self.critic(obs, action)  # (E, B)
        return (q - target).square().mean(), q.detach()

    def actor_loss(
        self, obs: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantage-weighted regression, Kostrikov et al. eq. 7: -mean_B[min(exp(beta * A), max_weight) *
        log pi(a|s)] with A the (detached) advantage (B,). Returns the loss and the weights (B,)."""
        weight = torch.exp(self.beta * advantage).clamp(max=self.max_weight)  # (B,)
        return -(weight * self.actor.log_prob(obs, action)).mean(), weight

    # ------------------------------------------------------------------ update
    def _forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The three losses on raw inputs, and their sum (disjoint parameters: one backward gives each its own
        gradient)."""
        obs, next_obs, action = self.normalize(obs), self.normalize(next_obs), self.to_unit_action(action)
        value_loss, advantage, v = self.value_loss(obs, action)
        critic_loss, q = self.critic_loss(obs, action, reward, next_obs, terminated)
        actor_loss, weight = self.actor_loss(obs, action, advantage)
        metrics = {
            "value_loss": value_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.mean(),
            "v_mean": v.mean(),
            "advantage_mean": advantage.mean(),
            "weight_mean": weight.mean(),
        }
        return value_loss + critic_loss + actor_loss, metrics

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One IQL update (value, critic and actor steps, then the Polyak step) on a batch on the agent's device.
        Detached scalar tensors out; no host synchronisation."""
        fields = self._fields(batch)
        if self.actor_lr_schedule_steps is not None:
            self._actor_lr_tensor.fill_(self.scheduled_actor_lr(self.num_updates))
        metrics = self._step(
            fields["obs"], fields["action"], fields["reward"], fields["next_obs"], fields["terminated"]
        )
        self.num_updates += 1
        return metrics

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)[0] if deterministic else self.actor.sample(obs)

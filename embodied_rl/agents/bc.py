"""Behaviour cloning: the baseline of the offline-RL papers.

BC fits pi(s) to the dataset's actions by supervised learning (Fujimoto & Gu 2021, "A Minimalist Approach to
Offline Reinforcement Learning", Section 5; CORL's `any_percent_bc`). For a minibatch (s, a) with a in [-1, 1]^A
(the action space rescaled):

    loss="mse"   deterministic policy  mu(s) = tanh(f(s)),   J = mean_B sum_j (mu_j(s) - a_j)^2
    loss="nll"   Gaussian policy       N(mu(s), sigma^2),    J = mean_B [ -log N(a; mu(s), sigma^2) ]
                 with mu(s) = tanh(f(s)) and a learned state-independent log sigma (CORL's IQL actor).

The MSE is summed over action dimensions, like the NLL (CORL's `F.mse_loss` averages over them: |A| times
smaller, immaterial under Adam but not the same logged `bc_loss`; TD3+BC's `bc_loss` is CORL's mean).

The policy heads and `OfflineAgentBase` live in `embodied_rl.agents.offline` (shared with IQL and TD3+BC).

Speed: no host sync in `update`; `compile=True` compiles the whole step (gradient and Adam step,
`FunctionalStep`) into one graph; `cudagraphs=True` (CUDA only) captures loss, backward and Adam step in one CUDA graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from embodied_rl.agents.common import make_adam, maybe_cuda_graph
from embodied_rl.agents.functional_step import training_step
from embodied_rl.agents.offline import DeterministicActor, GaussianActor, OfflineAgentBase
from embodied_rl.validation import check_ranges


# ---------------------------------------------------------------------------------------------- BC
class BC(OfflineAgentBase):
    """Behaviour cloning for state observations and Box actions.

    `BC(observation_space, action_space, loss="mse" | "nll", ...)`; `update(batch)` takes a dict or a
    `Transitions` (only obs and action are used) and returns {"bc_loss"} (plus "log_std_mean" for "nll")
    as detached tensors. `act(obs, deterministic)`: with "mse" the policy is deterministic and the flag is
    ignored; with "nll" it samples N(mu, sigma^2) (clipped to the bounds) unless `deterministic`, which
    returns the mean. Defaults: two hidden layers of 256 ReLU units, Adam with lr 3e-4.
    """

    name = "BC"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        lr: float = 3e-4,
        loss: str = "mse",
        log_std_bounds: Sequence[float] = (-20.0, 2.0),
        normalize_obs: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        cudagraphs: bool = False,
        device: str | torch.device = "cpu",
    ):
        if loss not in ("mse", "nll"):
            raise ValueError(f"BC loss must be 'mse' or 'nll', got {loss!r}")
        check_ranges("hyperparameters", {"lr": lr}, {"lr": "> 0"})
        self.hidden_dims, self.activation, self.lr, self.loss = tuple(hidden_dims), activation, lr, loss
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self._init_base(observation_space, action_space, normalize_obs, compile, compile_mode, cudagraphs, device)

    def _build_networks(self) -> None:
        if self.loss == "mse":
            actor = DeterministicActor(self.obs_dim, self.action_dim, self.hidden_dims, self.activation)
        else:
            actor = GaussianActor(self.obs_dim, self.action_dim, self.hidden_dims, self.activation, self.log_std_bounds)
        self.actor = actor.to(self.device)
        self.optimizer = make_adam(self.actor.parameters(), self.lr, self._capturable)

    def _setup_steps(self) -> None:
        """Wrap the update step (see SAC._setup_steps); re-run after the optimiser state is replaced."""
        how = {"compile": self.compile, "compile_mode": self.compile_mode}
        trained = training_step([(self.actor, self.optimizer)], self._forward, **how)

        def step(obs: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
            return trained(obs, action)[0]

        self._step = maybe_cuda_graph(step, self.cudagraphs, self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def bc_loss(self, obs: torch.Tensor, unit_action: torch.Tensor) -> torch.Tensor:
        """MSE to the dataset action, or its negative log-likelihood under the Gaussian policy (module
        docstring). obs: normalised (B, S); unit_action: (B, A) in [-1, 1]."""
        if self.loss == "mse":
            return (self.actor(obs) - unit_action).square().sum(-1).mean()
        return -self.actor.log_prob(obs, unit_action).mean()

    def _forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.bc_loss(self.normalize(obs), self.to_unit_action(action))
        metrics = {"bc_loss": loss.detach()}
        if self.loss == "nll":
            metrics["log_std_mean"] = self.actor.log_std.detach().mean()
        return loss, metrics

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One gradient step on a batch already on the agent's device; detached scalar tensors, no host sync."""
        fields = self._fields(batch, ("obs", "action"))
        metrics = self._step(fields["obs"], fields["action"])
        self.num_updates += 1
        return metrics

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.loss == "mse":
            return self.actor(obs)
        return self.actor(obs)[0] if deterministic else self.actor.sample(obs)

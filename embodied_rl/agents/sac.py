"""Soft Actor-Critic with automatic entropy tuning.

Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel, Levine, "Soft Actor-Critic
Algorithms and Applications", arXiv:1812.05905 (2018) -- the version with twin Q-functions, no state-value
network and a learned temperature; equation numbers below refer to it. Pixel observations follow SAC-AE
(Yarats et al. 2019) and DrQ / DrQ-v2 (Kostrikov et al. 2020; Yarats et al. 2021).

Objectives, for a minibatch (s, a, r, s', d) from the replay buffer, d = 1 when s' is terminal:

    soft value (eq. 3)      V(s')  = min_i Q_target_i(s', a') - alpha * log pi(a'|s'),   a' ~ pi(.|s')
    critic (eq. 5)          J_Q    = sum_i E[ 1/2 (Q_i(s, a) - (r + gamma * (1 - d) * V(s')))^2 ]
    actor (eq. 7, with the reparameterisation a = tanh(mu(s) + sigma(s) * eps) of eq. 8 / 9)
                            J_pi   = E_s,eps[ alpha * log pi(a|s) - min_i Q_i(s, a) ]
    temperature (eq. 18)    J(alpha) = E_a~pi[ -alpha * log pi(a|s) - alpha * H_target ],  H_target = -|A|
    tanh-squashed Gaussian  log pi(a|s) = log N(u; mu, sigma) - sum_j log(1 - tanh(u_j)^2)   (Appendix C)
    target networks         theta_target <- (1 - tau) * theta_target + tau * theta            (Algorithm 1)

One update = critic step; every `actor_update_every` updates an actor + temperature step; every
`target_update_every` updates a Polyak step (Algorithm 1 uses 1 and 1). Defaults follow the paper's
hyperparameters (Table 1): Adam with learning rate 3e-4, two hidden layers of 256 ReLU units, tau = 0.005,
gamma = 0.99 (batch size 256 is the trainer's); the initial temperature is 1 as in the reference code.

Deviations from the paper, all deliberate:
- The Q-functions are one vectorised ensemble (`num_critics` members, default 2, evaluated in one batched
  matmul); with more than two members the minimum is over all of them. Each member's loss is summed.
- The actor loss evaluates the critic with detached weights: the result is the paper's gradient for the
  actor, without wasting a weight-gradient pass through the critic.
- The temperature is parameterised as alpha = exp(log_alpha) and log_alpha is optimised (the paper
  optimises alpha directly); the loss itself is eq. 18 with that alpha, so alpha stays positive.
- The temperature step uses log pi of the actions sampled for the actor step of the same update (as the
  reference implementation does).
- log sigma is squashed smoothly into [log_std_min, log_std_max] = [-5, 2] with a tanh (SAC-AE / DrQ); the
  reference implementation clips it to [-20, 2].
- Actions are squashed to [-1, 1]^A and rescaled affinely to the action space's bounds. Critics see the
  [-1, 1] actions, and log pi and H_target = -|A| are measured in that space (the paper uses [-1, 1]).
- Truncated episodes bootstrap: only `terminated` (true terminal states) cuts the target.
- Optional, off by default: gradient-norm clipping (`max_grad_norm`), LayerNorm in the critic
  (`critic_layer_norm`), a fixed temperature (`learn_alpha=False`).
Pixel observations (uint8 images, or a Dict with "pixels" and optionally "state"):
- One convolutional encoder (SAC-AE/DrQ conv stack + Linear + LayerNorm + tanh) is shared by critic and
  actor and trained by the critic loss only; the actor sees its features detached, computed before the
  critic step of the same update (DrQ-v2). SAC-AE / DrQ also train the actor's own Linear + LayerNorm.
- Next-state features for the target come from the online encoder without gradient; there is no target
  encoder (DrQ-v2). Polyak averaging covers the critic heads only.
- `augment=True` applies DrQ's random shift (pad 4, replicate) to obs and next_obs, independently, once
  per update (no averaging over K, M augmentations as in DrQ).
- `mixed_precision=True` runs the encoder's convolutions and Linear under bfloat16 autocast (its weights,
  the critic and actor heads and every loss stay float32: bfloat16's 8-bit mantissa would round Q-values of
  a few thousand to steps of 16).

Speed: no `.item()` / `.cpu()` or other host sync in `update`; it returns detached tensors. Adam uses its
fused kernel. `compile=True` turns the critic step and the actor + temperature step into one compiled graph
each (`torch.compile`, `compile_mode`): gradients by torch.func, clipping and the Adam arithmetic included
(`embodied_rl.agents.functional_step`); the optimisers keep their state, so checkpoints are the same either
way. `cudagraphs=True` (CUDA only) captures each whole step - losses, backward, optimiser step, Polyak
update - in a CUDA graph after three warm-up calls per step. See README "Speed" for the figures.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from embodied_rl.agents.common import (
    Critic,
    batch_fields,
    check_compile_settings,
    check_state_keys,
    detached_parameters,
    load_optimizer_state,
    make_adam,
    maybe_cuda_graph,
    observation_to_tensor,
    soft_update_,
)
from embodied_rl.agents.functional_step import training_step
from embodied_rl.devices import resolve_device
from embodied_rl.nn import ObservationEncoder, TanhNormal, map_pixels, mlp, random_shift
from embodied_rl.nn.mlp import Activation
from embodied_rl.nn.observation import Observation
from embodied_rl.validation import check_ranges


class Actor(nn.Module):
    """Features -> tanh-squashed diagonal Gaussian over [-1, 1]^A (Haarnoja et al. 2018, Appendix C)."""

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        activation: Activation,
        log_std_bounds: tuple[float, float],
    ):
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, 2 * action_dim, activation)
        self.log_std_min, self.log_std_max = log_std_bounds

    def forward(self, features: torch.Tensor) -> TanhNormal:
        mean, raw_log_std = self.net(features).chunk(2, dim=-1)  # (B, A) each
        unit = 0.5 * (torch.tanh(raw_log_std) + 1.0)  # (0, 1)
        log_std = self.log_std_min + (self.log_std_max - self.log_std_min) * unit
        return TanhNormal(mean, log_std.exp())


class Temperature(nn.Module):
    """The entropy temperature as alpha = exp(log_alpha); a module so that compiled steps can train it."""

    def __init__(self, init_alpha: float, learnable: bool):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(init_alpha))), requires_grad=learnable)


# Allowed values of the hyperparameters (embodied_rl.validation.in_range)
SAC_RANGES = {
    **dict.fromkeys(("num_critics", "actor_update_every", "target_update_every"), ">= 1"),
    **dict.fromkeys(("encoder_feature_dim", "encoder_num_filters", "encoder_num_layers"), ">= 1"),
    **dict.fromkeys(("actor_lr", "critic_lr", "alpha_lr", "init_alpha"), "> 0"),
    "gamma": "[0, 1]",
    "tau": "(0, 1]",
    "max_grad_norm": "None or > 0",
    "augment_pad": ">= 0",
}


class SAC:
    """Soft Actor-Critic for continuous (Box) actions and state, pixel or Dict(state, pixels) observations.

    `SAC(observation_space, action_space, **hparams)`; `act(obs, deterministic)` takes one observation or a
    batch (numpy) and returns actions in the action space's bounds; `update(batch)` takes a dict or a
    `Transitions` with obs, action, reward, next_obs, terminated (tensors on the agent's device) and returns
    a dict of detached scalar tensors. See the module docstring for the objectives and deviations.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        num_critics: int = 2,
        critic_layer_norm: bool = False,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        init_alpha: float = 1.0,
        learn_alpha: bool = True,
        target_entropy: float | None = None,
        actor_update_every: int = 1,
        target_update_every: int = 1,
        max_grad_norm: float | None = None,
        log_std_bounds: Sequence[float] = (-5.0, 2.0),
        encoder_feature_dim: int = 50,
        encoder_num_filters: int = 32,
        encoder_num_layers: int = 4,
        augment: bool = False,
        augment_pad: int = 4,
        mixed_precision: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        cudagraphs: bool = False,
        device: str | torch.device = "cpu",
    ):
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"SAC needs a 1-D Box action space, got {action_space}")
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ValueError("SAC needs finite action bounds (actions are tanh-squashed into them)")
        check_ranges("hyperparameters", locals(), SAC_RANGES)  # locals() here: the arguments
        self.observation_space, self.action_space = observation_space, action_space
        self.action_dim = int(action_space.shape[0])
        self.hidden_dims = tuple(hidden_dims)
        self.activation, self.num_critics, self.critic_layer_norm = activation, num_critics, critic_layer_norm
        self.actor_lr, self.critic_lr, self.alpha_lr = actor_lr, critic_lr, alpha_lr
        self.gamma, self.tau = gamma, tau
        self.init_alpha, self.learn_alpha = init_alpha, learn_alpha
        self.target_entropy = float(-self.action_dim if target_entropy is None else target_entropy)
        self.actor_update_every, self.target_update_every = actor_update_every, target_update_every
        self.max_grad_norm = max_grad_norm
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self.encoder_kwargs = dict(
            feature_dim=encoder_feature_dim,
            num_filters=encoder_num_filters,
            num_layers=encoder_num_layers,
            mixed_precision=mixed_precision,
        )
        self.augment, self.augment_pad = augment, augment_pad
        check_compile_settings(compile, compile_mode, cudagraphs)
        self.compile, self.compile_mode, self.cudagraphs = compile, compile_mode, cudagraphs
        self.device = resolve_device(device)
        self.num_updates = 0
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        """Networks, optimisers and (accelerated) update steps on `self.device`."""
        device = self.device
        self.encoder = ObservationEncoder(self.observation_space, **self.encoder_kwargs).to(device)
        self.has_pixels = self.encoder.has_pixels
        mixed = self.encoder_kwargs["mixed_precision"] and self.has_pixels
        if mixed and device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
            warnings.warn(
                "mixed_precision=True on a GPU without native bfloat16 (compute capability < 8.0, before Ampere): "
                "expect it to be slower than float32",
                stacklevel=3,
            )
        feature_dim = self.encoder.out_dim
        self.actor = Actor(feature_dim, self.action_dim, self.hidden_dims, self.activation, self.log_std_bounds).to(
            device
        )
        self.critic = Critic(
            feature_dim,
            self.action_dim,
            self.hidden_dims,
            self.activation,
            self.num_critics,
            self.critic_layer_norm,
        ).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.temperature = Temperature(self.init_alpha, self.learn_alpha).to(device)
        low = torch.as_tensor(self.action_space.low, dtype=torch.float32, device=device)
        high = torch.as_tensor(self.action_space.high, dtype=torch.float32, device=device)
        self.action_scale, self.action_bias = (high - low) / 2.0, (high + low) / 2.0  # (A,)

        capturable = self.cudagraphs and device.type == "cuda"
        self.critic_optimizer = make_adam(
            [*self.encoder.parameters(), *self.critic.parameters()], self.critic_lr, capturable
        )
        self.actor_optimizer = make_adam(self.actor.parameters(), self.actor_lr, capturable)
        self.alpha_optimizer = make_adam(self.temperature.parameters(), self.alpha_lr, capturable)
        self._setup_steps()

    def _setup_steps(self) -> None:
        """Wrap the update steps (`training_step`). `compile`: the critic step and the actor + temperature step
        each become one compiled graph (gradients, clipping and Adam included: `FunctionalStep`). `cudagraphs`:
        each whole step (also the Polyak update) is captured in a CUDA graph. Re-run after the optimiser state is
        replaced, since CUDA graphs hold pointers to it."""
        how = {"max_grad_norm": self.max_grad_norm, "compile": self.compile, "compile_mode": self.compile_mode}
        critic = [(nn.ModuleList([self.encoder, self.critic]), self.critic_optimizer)]
        self._critic_training_step = training_step(critic, self._critic_forward, **how)
        trained = [(self.actor, self.actor_optimizer)]
        if self.learn_alpha:
            trained.append((self.temperature, self.alpha_optimizer))
        self._actor_training_step = training_step(trained, self._actor_forward, **how)
        self._critic_step = maybe_cuda_graph(self._critic_update, self.cudagraphs, self.device)
        self._actor_step = maybe_cuda_graph(self._actor_update, self.cudagraphs, self.device)
        self._target_step = maybe_cuda_graph(self._target_update, self.cudagraphs, self.device)
        self._last_actor_metrics: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ losses
    def critic_loss(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_features: torch.Tensor,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Soft Bellman residual, Haarnoja et al. 2018b eq. 5, with the soft value of eq. 3:

            y = r + gamma * (1 - d) * (min_i Q_target_i(s', a') - alpha * log pi(a'|s')),  a' ~ pi(.|s')
            J_Q = sum_i mean_B 1/2 (Q_i(s, a) - y)^2

        `action` is in [-1, 1]^A; features (B, F); reward, terminated (B,).
        """
        with torch.no_grad():
            alpha = self.log_alpha.exp()
            next_action, next_log_prob = self.actor(next_features).rsample_with_log_prob()  # (B, A), (B,)
            next_q = self.critic_target(next_features, next_action).min(dim=0).values  # (E, B) -> (B,)
            soft_value = next_q - alpha * next_log_prob
            target_q = reward + self.gamma * (1.0 - terminated) * soft_value  # (B,)
        q = self.critic(features, action)  # (E, B)
        loss = 0.5 * (q - target_q).square().mean(dim=1).sum()
        return loss, {"q_mean": q.mean().detach(), "target_q_mean": target_q.mean()}

    def actor_loss(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised policy objective, Haarnoja et al. 2018b eq. 7 / 9:

            J_pi = mean_B [ alpha * log pi(a|s) - min_i Q_i(s, a) ],  a = tanh(mu(s) + sigma(s) * eps)

        The critic is evaluated with detached weights (only the actor is trained here). Returns the loss
        and log pi(a|s) (B,).
        """
        action, log_prob = self.actor(features).rsample_with_log_prob()  # (B, A), (B,)
        q = torch.func.functional_call(self.critic, detached_parameters(self.critic), (features, action))
        loss = (self.log_alpha.exp().detach() * log_prob - q.min(dim=0).values).mean()
        return loss, log_prob

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Temperature objective, Haarnoja et al. 2018b eq. 18, with alpha = exp(log_alpha):

            J(alpha) = mean_B [ -alpha * (log pi(a|s) + H_target) ]

        Raises alpha while the policy's entropy -log pi is below H_target and lowers it while above.
        """
        return -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()

    # ------------------------------------------------------------------ update steps
    def _critic_forward(
        self,
        obs: Observation,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: Observation,
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Augment, encode, critic loss. Returns the loss and (metrics, the detached features of `obs`)."""
        if self.augment and self.has_pixels:

            def shift(images: torch.Tensor) -> torch.Tensor:
                return random_shift(images, self.augment_pad, self.encoder.channels_last)

            obs = map_pixels(obs, shift, self.has_pixels)
            next_obs = map_pixels(next_obs, shift, self.has_pixels)
        features = self.encoder(obs)  # (B, F)
        with torch.no_grad():
            next_features = self.encoder(next_obs)
        unit_action = (action - self.action_bias) / self.action_scale  # env bounds -> [-1, 1]
        loss, metrics = self.critic_loss(features, unit_action, reward, next_features, terminated)
        metrics["critic_loss"] = loss.detach()
        return loss, (metrics, features.detach())

    def _actor_forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor loss plus temperature loss, and metrics. The two losses touch disjoint parameters (the
        actor's weights; log_alpha), so one backward pass of their sum gives each its own gradient."""
        loss, log_prob = self.actor_loss(features)
        metrics = {"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()}
        if self.learn_alpha:
            temperature_loss = self.alpha_loss(log_prob)
            metrics["alpha_loss"] = temperature_loss.detach()
            loss = loss + temperature_loss
        return loss, metrics

    def _critic_update(self, *batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Encoder + critic gradient step; returns metrics and the detached features of `obs`."""
        (metrics, features), grad_norm = self._critic_training_step(*batch)
        if grad_norm is not None:
            metrics["critic_grad_norm"] = grad_norm
        return metrics, features

    def _actor_update(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor and temperature gradient steps on the same sampled actions."""
        metrics, grad_norm = self._actor_training_step(features)
        if grad_norm is not None:
            metrics["actor_grad_norm"] = grad_norm
        metrics["alpha"] = self.log_alpha.detach().exp()
        return metrics

    def _target_update(self) -> None:
        soft_update_(self.critic_target, self.critic, self.tau)

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One SAC update (Algorithm 1's gradient step) on a batch already on the agent's device.

        Returns detached scalar tensors: critic_loss, q_mean, target_q_mean, and from the latest actor step
        actor_loss, entropy, alpha, alpha_loss (plus grad norms when clipping). No host synchronisation.
        """
        fields = batch_fields(batch, action_dim=self.action_dim, device=self.device)
        reward, terminated = (
            fields["reward"].reshape(-1),
            fields["terminated"].reshape(-1).to(fields["reward"].dtype),
        )  # (B,), never (B, 1); a bool `terminated` (gymnasium's dtype) becomes 0/1
        metrics, features = self._critic_step(fields["obs"], fields["action"], reward, fields["next_obs"], terminated)
        self.num_updates += 1
        if self.num_updates % self.actor_update_every == 0:
            self._last_actor_metrics = self._actor_step(features)
        if self.num_updates % self.target_update_every == 0:
            self._target_step()
        return {**metrics, **self._last_actor_metrics}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray | dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """Action(s) for one observation or a batch; `deterministic` takes tanh(mu(s)) instead of sampling.

        Returns float32 actions within the action space's bounds, (A,) or (B, A).
        """
        obs_tensor, batched = observation_to_tensor(obs, self.observation_space, self.device)
        dist = self.actor(self.encoder(obs_tensor))
        unit_action = dist.mode if deterministic else dist.sample()  # (B, A) in [-1, 1]
        action = (unit_action * self.action_scale + self.action_bias).cpu().numpy().astype(np.float32)
        return action if batched else action[0]

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.temperature.log_alpha

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Networks, target networks, optimisers, log_alpha and the update counter. Like `nn.Module.state_dict`,
        the tensors are the live ones: `copy.deepcopy` it to keep a snapshot."""
        return {
            "encoder": self.encoder.state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`, from any device. The state is copied, never shared with the caller."""
        check_state_keys(self, state)
        state = copy.deepcopy(state)
        self.encoder.load_state_dict(state["encoder"])
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        load_optimizer_state(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer_state(self.critic_optimizer, state["critic_optimizer"])
        load_optimizer_state(self.alpha_optimizer, state["alpha_optimizer"])
        self.num_updates = int(state["num_updates"])
        self._setup_steps()

    def to(self, device: str | torch.device) -> SAC:
        """Move everything (networks, optimiser state, log_alpha) to `device`; rebuilds the modules, so
        references to the old ones (`agent.actor`, ...) go stale."""
        state = self.state_dict()
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the RNG untouched
            self._build()
        self.load_state_dict(state)
        return self

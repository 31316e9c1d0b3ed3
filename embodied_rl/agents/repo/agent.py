"""The RePo agent: an RSSM world model trained with RePo's (or Dreamer's) objective and an actor-critic trained in
its imagination.

Zhu, Simchowitz, Gadipudi, Gupta, "RePo: Resilient Model-Based Reinforcement Learning by Regularizing Posterior
Predictability", NeurIPS 2023 (arXiv:2309.00082). The world-model objectives are in `world_model.py`, the behaviour
learning (Dreamer-v1) in `behaviour.py`, the RSSM, encoder and decoder in `rssm.py`. One `update(batch)` is one
iteration of the inner loop of the paper's training algorithm: a world-model step and a dual step on log beta (one
graph, two optimisers), then an actor step and a value step in imagination from every posterior state of the batch.

Defaults are the paper's and its reference code's (`experiments/train_repo.py`): RSSM deter 200, stoch 30,
hidden 200, embedding 1024, ELU dense layers and ReLU convolutions; Adam with learning rates 3e-4 (model),
8e-5 (actor, value), 1e-4 (log beta); gradient norms clipped at 100; horizon 15, gamma 0.99, lambda 0.95,
action-entropy coefficient 3e-4; target KL 3 nats, beta_0 = 1e-5, KL balance 5/6 (`prior_train_steps` = 5);
Dreamer's free nats 3. Batch size and sequence length (50 x 50 in the paper) are the trainer's.

Deviations from the reference code, all deliberate:
- Steps are stored in the world-model layout (`embodied_rl.data.sequences`): the posterior at row t predicts the
  reward of row t, and `is_first` resets the latent state and previous action to zeros (the reference code masks
  with `1 - done` instead). Rows with `is_first` are left out of the reward loss (the reference code masks the
  reward of terminal transitions instead). `is_terminal` is not used: like the reference code there is no
  continuation head and imagination discounts with a constant gamma.
- Imagination rolls `horizon` = 15 steps after the start state (Dreamer-v1; the reference code rolls 14) and the
  entropy bonus is estimated with the sampled actions' log-probabilities (the reference code averages 100 samples).
- The deterministic action is tanh(mean) (`TanhNormal.mode`); the reference code takes the most likely of 100
  samples.
- The image decoder of RePo is optional (`train_decoder`, off by default; the reference code always trains it, on
  detached features, to make pictures); under `objective="dreamer"` it is part of the model and always trained.
- Likelihood losses are reported without their additive constants.

Speed: no `.item()` or other host sync in `update`; it returns detached tensors. `compile=True` turns the
world-model + dual step, the actor step and the value step into one compiled graph each (gradients, clipping and
Adam included, `embodied_rl.agents.functional_step`); it is checked equal to eager on CPU (tests, `slow`), but
compiling the unrolled RSSM and imagination loops takes minutes (about 4 on 2 CPU cores for tiny networks and
6-step sequences), so it is off by default and unmeasured at the paper's sizes. `mixed_precision=True` runs the
convolutional encoder and decoder under bfloat16 autocast (RSSM, heads and losses stay float32).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from embodied_rl.agents.common import (
    check_compile_settings,
    check_state_keys,
    detached_parameters,
    load_optimizer_state,
    make_adam,
)
from embodied_rl.agents.functional_step import training_step
from embodied_rl.agents.repo.behaviour import Actor, ValueNet, actor_loss, imagine, value_loss
from embodied_rl.agents.repo.rssm import IMAGE_SIZE, PixelEncoder
from embodied_rl.agents.repo.world_model import OBJECTIVES, DualVariable, WorldModel
from embodied_rl.devices import resolve_device
from embodied_rl.validation import check_field_types, check_ranges

REPO_RANGES = {
    **dict.fromkeys(
        ("embed_dim", "cnn_depth", "deter_dim", "stoch_dim", "hidden_dim", "reward_layers", "horizon"), ">= 1"
    ),
    **dict.fromkeys(("actor_layers", "value_layers"), ">= 0"),
    **dict.fromkeys(("min_std", "actor_min_std", "target_kl", "init_beta", "beta_lr"), "> 0"),
    **dict.fromkeys(("model_lr", "actor_lr", "value_lr", "actor_mean_scale"), "> 0"),
    **dict.fromkeys(("free_nats", "kl_scale", "actor_entropy"), ">= 0"),
    **dict.fromkeys(("kl_balance", "gamma", "return_lambda"), "[0, 1]"),
    "grad_clip": "None or > 0",
}


@dataclass
class RePoConfig:
    """Hyperparameters of `RePo` (paper / reference-code defaults; see the module docstring)."""

    objective: str = "repo"  # "repo" (reward + KL constraint, no reconstruction) or "dreamer" (ELBO, free nats)
    # world model
    embed_dim: int = 1024  # encoder output; 32 * cnn_depth needs no extra Linear
    cnn_depth: int = 32  # channels of the first conv (then x2, x4, x8)
    deter_dim: int = 200  # GRU state h_t ("belief_size")
    stoch_dim: int = 30  # Gaussian state z_t ("state_size")
    hidden_dim: int = 200  # RSSM, reward, actor and value hidden width
    reward_layers: int = 3
    dense_activation: str = "elu"
    cnn_activation: str = "relu"
    min_std: float = 0.1  # RSSM prior / posterior std floor
    # RePo objective (world_model.py, (R1)-(R4))
    target_kl: float = 3.0  # eps of the KL constraint, nats per step
    kl_balance: float = 5.0 / 6.0  # share of the KL gradient on the prior (prior_train_steps / (1 + ...))
    init_beta: float = 1e-5  # initial Lagrange multiplier
    beta_lr: float = 1e-4  # Adam on log beta (dual ascent)
    train_decoder: bool = False  # RePo: image decoder on detached features, for pictures only
    # Dreamer objective
    free_nats: float = 3.0
    kl_scale: float = 1.0
    # behaviour (Dreamer-v1)
    horizon: int = 15
    gamma: float = 0.99
    return_lambda: float = 0.95
    actor_entropy: float = 3e-4  # entropy bonus coefficient ("action_ent_coef")
    actor_layers: int = 4
    value_layers: int = 3
    actor_mean_scale: float = 5.0
    actor_min_std: float = 0.1
    actor_init_std: float = 0.0
    # optimisation
    model_lr: float = 3e-4
    actor_lr: float = 8e-5
    value_lr: float = 8e-5
    grad_clip: float | None = 100.0  # max gradient 2-norm of each network (None: no clipping)
    mixed_precision: bool = False  # bfloat16 autocast on the conv encoder / decoder
    compile: bool = False  # torch.compile each training step (checked equal to eager on CPU in the tests)
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self, "RePo settings")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"invalid RePo settings: objective={self.objective!r} (must be one of {OBJECTIVES})")
        check_ranges("RePo settings", vars(self), REPO_RANGES)
        check_compile_settings(self.compile, self.compile_mode, False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RePoConfig:
        """From a dict or OmegaConf node (e.g. configs/agent/repo.yaml; a `name` key is ignored)."""
        values = {key: value for key, value in dict(values).items() if key != "name"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown RePo config keys {unknown}; known: {sorted(known)}")
        return cls(**values)


SEQUENCE_FIELDS = ("obs", "prev_action", "reward", "is_first")


class RePo:
    """RePo (or, with `objective="dreamer"`, Dreamer-v1) on 64x64 RGB pixels with continuous actions.

    `RePo(observation_shape, action_space, cfg, device)`: `observation_shape` (64, 64, 3) or a uint8 Box of that
    shape; `action_space` a 1-D Box with finite bounds, or the action dim A for [-1, 1]^A; `device` "auto", "cpu",
    "cuda", "cuda:N".

    - `act(obs, deterministic=False)`: uint8 obs (N, 64, 64, 3) (or one (64, 64, 3)) -> actions (N, A) float32 in
      the action space's bounds. Carries each env's recurrent state (h, z, previous action) between calls.
    - `reset(done_mask)`: (N,) bool, zeroes that state for the marked envs (call at episode starts; the first
      call, or a new N, sizes the state to N with every env starting).
    - `update(batch)`: one training iteration on a `Sequences` batch (B, L, ...) on the agent's device; returns
      detached scalar tensors.
    - `observe(obs, prev_action, is_first)`: posterior features (B, L, F) of a sequence, with gradients.
    - `encoder`: the `PixelEncoder`, uint8 (..., 64, 64, 3) -> (..., embed_dim); test-time adaptation trains it
      alone. `world_model`, `actor`, `value`, `dual` are the other networks.
    """

    settings_class = RePoConfig  # runs build it from configs/agent/repo.yaml (trainers.builders.make_agent)

    def __init__(
        self,
        observation_shape: Sequence[int] | gym.spaces.Box,
        action_space: gym.spaces.Box | int,
        cfg: RePoConfig | None = None,
        device: str | torch.device = "auto",
    ):
        shape = tuple(observation_shape.shape if isinstance(observation_shape, gym.spaces.Box) else observation_shape)
        if shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"RePo takes channels-last {IMAGE_SIZE}x{IMAGE_SIZE} RGB observations, got shape {shape}")
        if isinstance(action_space, int | np.integer):
            low, high = -np.ones(int(action_space)), np.ones(int(action_space))
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
        else:
            raise ValueError(f"RePo needs a 1-D Box action space or an action dim, got {action_space}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("RePo needs finite action bounds (actions are tanh-squashed into them)")
        self.observation_shape, self.action_dim = shape, len(low)
        self.action_low, self.action_high = low.astype(np.float32), high.astype(np.float32)
        self.cfg = copy.deepcopy(cfg) if cfg is not None else RePoConfig()
        self.device = resolve_device(device)
        self.num_updates = 0
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        cfg, device = self.cfg, self.device
        self.world_model = WorldModel(
            self.action_dim,
            objective=cfg.objective,
            embed_dim=cfg.embed_dim,
            cnn_depth=cfg.cnn_depth,
            deter_dim=cfg.deter_dim,
            stoch_dim=cfg.stoch_dim,
            hidden_dim=cfg.hidden_dim,
            reward_layers=cfg.reward_layers,
            dense_activation=cfg.dense_activation,
            cnn_activation=cfg.cnn_activation,
            min_std=cfg.min_std,
            train_decoder=cfg.train_decoder,
            target_kl=cfg.target_kl,
            kl_balance=cfg.kl_balance,
            free_nats=cfg.free_nats,
            kl_scale=cfg.kl_scale,
            mixed_precision=cfg.mixed_precision,
        ).to(device)
        feature_dim = self.world_model.rssm.feature_dim
        self.actor = Actor(
            feature_dim,
            self.action_dim,
            cfg.hidden_dim,
            cfg.actor_layers,
            cfg.dense_activation,
            cfg.actor_mean_scale,
            cfg.actor_min_std,
            cfg.actor_init_std,
        ).to(device)
        self.value = ValueNet(feature_dim, cfg.hidden_dim, cfg.value_layers, cfg.dense_activation).to(device)
        self.dual = DualVariable(cfg.init_beta).to(device)
        self.model_optimizer = make_adam(self.world_model.parameters(), cfg.model_lr)
        self.beta_optimizer = make_adam(self.dual.parameters(), cfg.beta_lr)
        self.actor_optimizer = make_adam(self.actor.parameters(), cfg.actor_lr)
        self.value_optimizer = make_adam(self.value.parameters(), cfg.value_lr)
        self.action_scale = torch.as_tensor((self.action_high - self.action_low) / 2.0, device=device)  # (A,)
        self.action_bias = torch.as_tensor((self.action_high + self.action_low) / 2.0, device=device)  # (A,)
        self._state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # per-env (h, z, a_prev)
        self._setup_steps()

    def _setup_steps(self) -> None:
        """The three training steps (`training_step`: eager, or one compiled graph each with `compile`)."""
        how = {"max_grad_norm": self.cfg.grad_clip, "compile": self.cfg.compile, "compile_mode": self.cfg.compile_mode}
        model_pairs = [(self.world_model, self.model_optimizer)]
        if self.cfg.objective == "repo":  # the dual variable's loss rides in the same graph (disjoint parameters)
            model_pairs.append((self.dual, self.beta_optimizer))
        self._model_step = training_step(model_pairs, self._model_forward, **how)
        self._actor_step = training_step([(self.actor, self.actor_optimizer)], self._actor_forward, **how)
        self._value_step = training_step([(self.value, self.value_optimizer)], self._value_forward, **how)

    @property
    def encoder(self) -> PixelEncoder:
        """The image encoder, uint8 (..., 64, 64, 3) -> (..., embed_dim) (the part test-time adaptation trains)."""
        return self.world_model.encoder

    @property
    def beta(self) -> torch.Tensor:
        """The Lagrange multiplier of the KL constraint (detached)."""
        return self.dual.beta

    # ------------------------------------------------------------------ update steps
    def _model_forward(
        self, obs: torch.Tensor, prev_action: torch.Tensor, reward: torch.Tensor, is_first: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
        """World-model (+ dual) loss; aux: metrics and the detached posterior (h, z) flattened to (B * L, .)."""
        loss, metrics, latents = self.world_model.loss(obs, prev_action, reward, is_first, self.dual)
        return loss, (metrics, latents.deter.detach().flatten(0, 1), latents.stoch.detach().flatten(0, 1))

    def _actor_forward(
        self, deter: torch.Tensor, stoch: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
        """Imagine from (h, z) (N, D), (N, S) with the world model's and the value net's weights detached (only the
        actor is trained here); aux: metrics, imagined features f_1 .. f_{H-1} and their lambda-returns, detached."""
        wm = self.world_model

        def frozen(module: nn.Module):
            params = detached_parameters(module)
            return lambda *args: functional_call(module, params, args)

        imagination = imagine(frozen(wm.rssm.prior_step), self.actor, deter, stoch, self.cfg.horizon)
        reward_head = frozen(wm.reward_head)
        loss, returns, metrics = actor_loss(
            imagination,
            lambda features: reward_head(features).squeeze(-1),
            frozen(self.value),
            self.cfg.gamma,
            self.cfg.return_lambda,
            self.cfg.actor_entropy,
        )
        return loss, (metrics, imagination.features[1:-1].detach(), returns.detach())

    def _value_forward(self, features: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return value_loss(self.value, features, returns)

    def _sequence_fields(self, batch: Any) -> dict[str, torch.Tensor]:
        """obs, prev_action, reward, is_first of a `Sequences` (or a dict), checked: shapes and dtypes only."""
        get = batch.get if isinstance(batch, Mapping) else lambda key: getattr(batch, key, None)
        fields = {key: get(key) for key in SEQUENCE_FIELDS}
        missing = [key for key, value in fields.items() if value is None]
        if missing:
            raise KeyError(f"the batch has no {', '.join(missing)} (RePo needs {', '.join(SEQUENCE_FIELDS)})")
        for key, value in fields.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"batch.{key} is a {type(value).__name__}; update() takes torch tensors")
            if value.device.type != self.device.type:
                raise ValueError(f"batch.{key} is on {value.device}, the agent on {self.device}")
        obs, prev_action = fields["obs"], fields["prev_action"]
        lead = tuple(obs.shape[:2])
        expected = {
            "obs": ((*lead, *self.observation_shape), torch.uint8),
            "prev_action": ((*lead, self.action_dim), torch.float32),
            "reward": (lead, torch.float32),
            "is_first": (lead, torch.bool),
        }
        for key, (shape, dtype) in expected.items():
            if tuple(fields[key].shape) != shape or fields[key].dtype != dtype:
                raise ValueError(
                    f"batch.{key} is {fields[key].dtype} {tuple(fields[key].shape)}; RePo needs {dtype} {shape} "
                    f"(B, L = {lead})"
                )
        fields["prev_action"] = (prev_action - self.action_bias) / self.action_scale  # env bounds -> [-1, 1]
        return fields

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One training iteration of RePo on a `Sequences` batch (B, L) on the agent's device: world model and
        log beta, then actor, then value. Returns detached scalar tensors: model_loss, reward_loss, kl, beta (after
        this step's dual update) and beta_loss (RePo), decoder_loss (with a decoder), kl_loss (Dreamer),
        actor_loss, entropy, imagined_reward, imagined_return, value_loss, value_mean, and model / actor / value
        grad norms (before clipping) when clipping. No host synchronisation."""
        fields = self._sequence_fields(batch)
        (metrics, deter, stoch), grad_norm = self._model_step(
            fields["obs"], fields["prev_action"], fields["reward"], fields["is_first"]
        )
        metrics = dict(metrics)
        if grad_norm is not None:
            metrics["model_grad_norm"] = grad_norm
        if self.cfg.objective == "repo":
            metrics["beta"] = self.beta
        (actor_metrics, features, returns), grad_norm = self._actor_step(deter, stoch)
        metrics.update(actor_metrics)
        if grad_norm is not None:
            metrics["actor_grad_norm"] = grad_norm
        value_metrics, grad_norm = self._value_step(features, returns)
        metrics.update(value_metrics)
        if grad_norm is not None:
            metrics["value_grad_norm"] = grad_norm
        self.num_updates += 1
        return metrics

    # ------------------------------------------------------------------ acting
    def observe(self, obs: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
        """Posterior features f_t = [h_t, z_t] (B, L, F) of a sequence: uint8 obs (B, L, 64, 64, 3), previous
        actions in the action space's units (B, L, A), `is_first` (B, L) bool (tensors on the agent's device).
        Filtering starts from the zero state; z_t is sampled. Gradients flow (to the encoder, for adaptation);
        wrap in `torch.no_grad()` when only the values are needed. `world_model.observe` gives all of `Latents`
        (posterior and prior means and stds) from actions in [-1, 1]."""
        unit_action = (prev_action.float() - self.action_bias) / self.action_scale
        return self.world_model.observe(obs, unit_action, is_first.bool()).features

    @property
    def policy_features(self) -> torch.Tensor | None:
        """The features [h_t, z_t] (N, F) of each env's current latent state, what `act` fed the actor last
        (None before the first `act` / `reset`)."""
        if self._state is None:
            return None
        return torch.cat(self._state[:2], dim=-1)

    @property
    def acting_state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Each env's (h, z, previous action) carried between `act` calls (None before the first); set it back to
        resume acting where it was (`agents.protocol.acting_state_kept` does so around an evaluation)."""
        return self._state

    @acting_state.setter
    def acting_state(self, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> None:
        self._state = state

    def _zero_state(self, num_envs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        deter, stoch = self.world_model.rssm.initial_state(num_envs, self.device)
        return deter, stoch, torch.zeros(num_envs, self.action_dim, device=self.device)

    def reset(self, done_mask: np.ndarray) -> None:
        """Zero the recurrent state (h, z, previous action) of the envs marked in `done_mask` (N,) bool; the first
        call (or one with another N) sizes the state to N envs, all starting."""
        mask = np.asarray(done_mask, dtype=bool).reshape(-1)
        if self._state is None or self._state[0].shape[0] != len(mask):
            self._state = self._zero_state(len(mask))
            return
        keep = torch.as_tensor(~mask, device=self.device)[:, None]  # (N, 1)
        self._state = tuple(torch.where(keep, part, torch.zeros_like(part)) for part in self._state)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for uint8 observations (N, 64, 64, 3) -> (N, A) float32 (or (64, 64, 3) -> (A,)), within the
        action space's bounds. One filtering step per call: h_t from the carried (h, z, a_prev), z_t ~ q(. | h_t,
        o_t); then a_t ~ pi(. | h_t, z_t), or tanh(mean) when `deterministic`."""
        array = np.asarray(obs)
        batched = array.ndim == 4
        if array.dtype != np.uint8 or tuple(array.shape[int(batched) :]) != self.observation_shape:
            raise ValueError(
                f"RePo.act takes uint8 observations (N, *{self.observation_shape}); got {array.dtype} {array.shape}"
            )
        images = torch.as_tensor(array if batched else array[None], device=self.device)  # (N, 64, 64, 3)
        num_envs = images.shape[0]
        if self._state is None:
            self._state = self._zero_state(num_envs)
        elif self._state[0].shape[0] != num_envs:
            raise ValueError(
                f"act got {num_envs} observations but the recurrent state holds {self._state[0].shape[0]} envs; "
                "call reset(done_mask) with the new number of envs first"
            )
        deter, stoch, prev_action = self._state
        embed = self.world_model.encoder(images)  # (N, E)
        deter, stoch, *_ = self.world_model.rssm.observe_step(deter, stoch, prev_action, embed)
        dist = self.actor(torch.cat([deter, stoch], dim=-1))
        unit_action = dist.mode if deterministic else dist.sample()  # (N, A) in [-1, 1]
        self._state = (deter, stoch, unit_action)
        action = (unit_action * self.action_scale + self.action_bias).cpu().numpy().astype(np.float32)
        return action if batched else action[0]

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, log beta and the update counter (not the per-env acting state: call `reset`
        after loading). Like `nn.Module.state_dict`, the tensors are the live ones."""
        return {
            "world_model": self.world_model.state_dict(),
            "actor": self.actor.state_dict(),
            "value": self.value.state_dict(),
            "log_beta": self.dual.log_beta.detach(),
            "model_optimizer": self.model_optimizer.state_dict(),
            "beta_optimizer": self.beta_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`, from any device; the state is copied. Clears the per-env acting state."""
        check_state_keys(self, state)
        state = copy.deepcopy(state)
        self.world_model.load_state_dict(state["world_model"])
        self.actor.load_state_dict(state["actor"])
        self.value.load_state_dict(state["value"])
        with torch.no_grad():
            self.dual.log_beta.copy_(state["log_beta"])
        load_optimizer_state(self.model_optimizer, state["model_optimizer"])
        load_optimizer_state(self.beta_optimizer, state["beta_optimizer"])
        load_optimizer_state(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer_state(self.value_optimizer, state["value_optimizer"])
        self.num_updates = int(state["num_updates"])
        self._state = None
        self._setup_steps()

    def to(self, device: str | torch.device) -> RePo:
        """Move everything to `device` (rebuilds the modules: references to the old ones go stale)."""
        state = self.state_dict()
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the RNG untouched
            self._build()
        self.load_state_dict(state)
        return self

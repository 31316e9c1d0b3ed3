"""What the state-based offline learners (IQL, TD3+BC, BC) share: their policy heads and plumbing.

`DeterministicActor` (TD3+BC, BC with the MSE loss): mu(s) = tanh(f(s)).
`GaussianActor` (IQL, BC with the NLL loss): N(tanh(f(s)), sigma^2) with a learned state-independent log sigma,
as CORL's IQL actor.
`OfflineAgentBase`: space checks, observation normalisation with dataset statistics (`fit_normalizer`), action
rescaling to [-1, 1], `act`, `state_dict` / `load_state_dict` / `to`.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from embodied_rl.agents.common import (
    BATCH_KEYS,
    batch_fields,
    check_compile_settings,
    check_state_keys,
    load_optimizer_state,
    observation_to_tensor,
)
from embodied_rl.data.normalization import ObservationNormalizer
from embodied_rl.devices import resolve_device
from embodied_rl.nn import mlp
from embodied_rl.nn.mlp import Activation

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------- policy heads
class DeterministicActor(nn.Module):
    """State (B, S) -> action tanh(f(s)) in [-1, 1]^A (TD3's actor; Fujimoto et al. 2018)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int], activation: Activation):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, action_dim, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))  # (B, A)


class GaussianActor(nn.Module):
    """State (B, S) -> diagonal Gaussian N(tanh(f(s)), sigma^2) over [-1, 1]^A, where only the mean is
    squashed and log sigma is one learned vector shared by all states, clipped to `log_std_bounds`
    (the actor of CORL's IQL). Samples are clipped to [-1, 1] by the caller."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        activation: Activation,
        log_std_bounds: tuple[float, float],
    ):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, action_dim, activation)
        self.log_std = nn.Parameter(torch.zeros(action_dim))  # (A,)
        self.log_std_min, self.log_std_max = log_std_bounds

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, A) and log sigma (A,)."""
        return torch.tanh(self.net(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log N(action; mu(s), sigma^2) summed over the action dims: (B, A) -> (B,)."""
        mean, log_std = self(obs)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return mean + log_std.exp() * torch.randn_like(mean)  # (B, A)


# ---------------------------------------------------------------------------------------------- shared plumbing
def check_state_spaces(name: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """The offline learners take 1-D Box observations and 1-D Box actions with finite bounds."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"{name} needs a 1-D Box (state) observation space, got {observation_space}; pixel or Dict "
            "observations are supported by SAC only (load Dict datasets with obs_key='state')"
        )
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"{name} needs a 1-D Box action space, got {action_space}")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(f"{name} needs finite action bounds (policies act in them), got {action_space}")


class OfflineAgentBase:
    """What BC, IQL and TD3+BC share. A subclass sets its hyperparameters, calls `_init_base(...)`, and
    implements `_build_networks()` (networks and optimisers), `_setup_steps()` (wrapped update steps),
    `_policy(obs, deterministic)` (normalised obs (B, S) -> action in [-1, 1]^A), `_modules()` and
    `_optimizers()` (name -> object, for `state_dict`)."""

    name = "agent"

    def _init_base(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        normalize_obs: bool,
        compile: bool,
        compile_mode: str | None,
        cudagraphs: bool,
        device: str | torch.device,
    ) -> None:
        check_state_spaces(self.name, observation_space, action_space)
        check_compile_settings(compile, compile_mode, cudagraphs)
        self.observation_space, self.action_space = observation_space, action_space
        self.obs_dim, self.action_dim = int(observation_space.shape[0]), int(action_space.shape[0])
        self.normalize_obs = normalize_obs
        self.compile, self.compile_mode, self.cudagraphs = compile, compile_mode, cudagraphs
        self.device = resolve_device(device)
        self.num_updates = 0
        self.normalizer_fitted = False  # statistics set by fit_normalizer or a loaded state_dict
        self._build()

    def _build(self) -> None:
        device = self.device
        self.normalizer = ObservationNormalizer(self.obs_dim).to(device)
        low = torch.as_tensor(self.action_space.low, dtype=torch.float32, device=device)
        high = torch.as_tensor(self.action_space.high, dtype=torch.float32, device=device)
        self.action_scale, self.action_bias = (high - low) / 2.0, (high + low) / 2.0  # (A,)
        self._capturable = self.cudagraphs and device.type == "cuda"
        self._build_networks()
        self._setup_steps()

    # ------------------------------------------------------------------ hooks
    def _build_networks(self) -> None:
        raise NotImplementedError

    def _setup_steps(self) -> None:
        raise NotImplementedError

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        raise NotImplementedError

    def _modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    # ------------------------------------------------------------------ observations and actions
    @torch.no_grad()
    def fit_normalizer(self, obs: torch.Tensor) -> None:
        """Set the observation mean and std from the dataset's observations (N, S); a no-op when
        `normalize_obs=False`. Call once before training; `update` and `act` take raw observations."""
        if self.normalize_obs:
            self.normalizer.fit(obs)
        self.normalizer_fitted = True

    def prepare(self, data: Any) -> None:
        """The agent protocol's `prepare` hook (`embodied_rl.agents.protocol`): fit the normaliser on the training
        data's observations (`data.obs`, (N, S)) unless a loaded state_dict or an earlier call already set it."""
        if not self.normalizer_fitted:
            self.fit_normalizer(data.obs)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float()
        return self.normalizer(obs) if self.normalize_obs else obs

    def to_unit_action(self, action: torch.Tensor) -> torch.Tensor:
        """Action-space bounds -> [-1, 1]^A."""
        return (action - self.action_bias) / self.action_scale

    def _fields(self, batch: Any, keys: Sequence[str] = BATCH_KEYS) -> dict[str, torch.Tensor]:
        """The batch's `keys` fields, checked, with reward and terminated as (B,), never (B, 1); warns once when
        the normaliser was never fitted."""
        fields = batch_fields(batch, keys, self.action_dim, self.device)
        if self.normalize_obs and not self.normalizer_fitted:
            warnings.warn(
                f"{self.name} trains with normalize_obs=True but fit_normalizer(dataset_obs) was never called: its "
                "observations are not normalised (OfflineTrainer calls it through prepare(data))",
                stacklevel=3,
            )
            self.normalizer_fitted = True  # warned once
        if "reward" in fields:
            fields["reward"] = fields["reward"].reshape(-1)
        if "terminated" in fields:
            fields["terminated"] = fields["terminated"].reshape(-1).float()
        return fields

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) for one raw observation (S,) or a batch (B, S): float32 (A,) or (B, A) within the
        action space's bounds."""
        obs_tensor, batched = observation_to_tensor(obs, self.observation_space, self.device)
        unit_action = self._policy(self.normalize(obs_tensor), deterministic).clamp(-1.0, 1.0)  # (B, A)
        action = (unit_action * self.action_scale + self.action_bias).cpu().numpy().astype(np.float32)
        return action if batched else action[0]

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Networks (and target networks), the normaliser's statistics, optimisers and the update counter. Like
        `nn.Module.state_dict`, the tensors are the live ones: `copy.deepcopy` it to keep a snapshot."""
        state: dict[str, Any] = {name: module.state_dict() for name, module in self._modules().items()}
        state["normalizer"] = self.normalizer.state_dict()
        state.update({name: opt.state_dict() for name, opt in self._optimizers().items()})
        state["num_updates"] = self.num_updates
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`, from any device. The state is copied, never shared with the caller."""
        check_state_keys(self, state)
        state = copy.deepcopy(state)
        for name, module in self._modules().items():
            module.load_state_dict(state[name])
        self.normalizer.load_state_dict(state["normalizer"])
        for name, optimizer in self._optimizers().items():
            load_optimizer_state(optimizer, state[name])
        self.num_updates = int(state["num_updates"])
        self.normalizer_fitted = True
        self._setup_steps()

    def to(self, device: str | torch.device):
        """Move everything (networks, normaliser, optimiser state) to `device`; rebuilds the modules, so
        references to the old ones (`agent.actor`, ...) go stale."""
        state = self.state_dict()
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the RNG untouched
            self._build()
        self.load_state_dict(state)
        return self

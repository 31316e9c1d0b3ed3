"""Preference reward models: per-step rewards of (s, a) segments, scored and compared by Bradley-Terry.

Two architectures, each an ensemble of E members, each optionally robust (PEARL's RRL):

- `MLPRewardEnsemble`: a Markovian reward r(s_t, a_t) per step; a segment's score is the sum of its rewards
  (Christiano et al. 2017, Lee et al. 2021 "PEBBLE"). The E MLPs are evaluated together
  (`embodied_rl.nn.ensemble.EnsembleMLP`).
- `PreferenceTransformer`: Kim et al., "Preference Transformer: Modeling Human Preferences using Transformers
  for RL", ICLR 2023. A causal transformer over one token per step (s_t, a_t) gives a non-Markovian reward
  r_t = r(s_0, a_0, ..., s_t, a_t); the preference-attention layer (their Sec. 4.2) gives the segment score as a
  weighted sum of those rewards,

      score = sum_t w_t r_t,   w_t = (1/H) sum_i softmax_t(q_i . k_t / sqrt(D)),   sum_t w_t = 1,

  with queries and keys from the transformer's outputs (bidirectional over the segment). We use the weighted sum
  by default (`weighted_sum=True`); the public release's training command never turns it on (it scores a
  segment by the plain sum of r_t), which `weighted_sum=False` reproduces.

**Robust reward learning** (`robust=True`; PEARL, Liu et al. ICML 2024, arXiv 2306.03615, Sec. 4.2): each step's
reward is a Gaussian N(mu_t, sigma_t^2) from a mean head and a log-variance head; training scores segments with
reparameterised samples r_t = mu_t + sigma_t * eps_t (eps_t ~ N(0, 1), so gradients reach mu and sigma), and
a regulariser (`embodied_rl.rewards.preference.variance_regularizer`) pulls sigma_t^2 towards a set value.
Relabelling and accuracy use the means mu_t.

Every model takes raw (obs (B, H, S), action (B, H, A)) segments, or one batch per member (E, B, H, ...), with
`obs[:, t]` the state at which `action[:, t]` was taken; states are standardised inside the model with statistics
of the training segments (buffers in its state_dict). Outputs are per member: `RewardOutput` with (E, B, H)
tensors. `predict` / `predict_episodes` give per-transition rewards for relabelling (ensemble mean of the
reward means); the transformer's context for transition t is the window of the `context_length` steps ending
at t (see `PreferenceRewardModel.predict_episodes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied_rl.data.normalization import ObservationNormalizer
from embodied_rl.nn.ensemble import EnsembleMLP

# Soft bounds on a step's log-variance (smooth, unlike a clamp, so gradients never vanish at the bounds).
MIN_LOG_VAR, MAX_LOG_VAR = -10.0, 6.0


@dataclass
class RewardOutput:
    """Per-member, per-step outputs of a reward model on segments of H steps."""

    reward: torch.Tensor  # (E, B, H) reward, the mean mu_t for robust models
    log_var: torch.Tensor | None = None  # (E, B, H) log sigma_t^2 (robust models), else None
    weights: torch.Tensor | None = None  # (E, B, H) preference-attention weights, sum 1 over H (transformer)

    def scores(self, sample: bool = False) -> torch.Tensor:
        """Segment scores (E, B): sum_t w_t r_t with preference attention, else sum_t r_t.

        `sample=True` (training a robust model) scores reparameterised samples r_t = mu_t + sigma_t * eps_t
        (PEARL Sec. 4.2); otherwise the means.
        """
        reward = self.reward
        if sample and self.log_var is not None:
            reward = reward + (0.5 * self.log_var).exp() * torch.randn_like(reward)  # (E, B, H)
        if self.weights is not None:
            return (self.weights * reward).sum(dim=-1)
        return reward.sum(dim=-1)


def soft_bound_log_var(raw: torch.Tensor) -> torch.Tensor:
    """A head's raw output -> log-variance softly inside (MIN_LOG_VAR, MAX_LOG_VAR)."""
    log_var = MAX_LOG_VAR - F.softplus(MAX_LOG_VAR - raw)
    return MIN_LOG_VAR + F.softplus(log_var - MIN_LOG_VAR)


class PreferenceRewardModel(nn.Module):
    """What every preference reward model shares: input normalisation, the robust heads, prediction.

    A subclass sets `context_length` (1: Markovian) and implements `_members(x)`: normalised inputs
    (B, H, S+A) or (E, B, H, S+A) -> per-member head outputs (E, B, H, 1 or 2) and preference weights
    (E, B, H) or None.
    """

    kind: str
    context_length: int

    def __init__(self, obs_dim: int, action_dim: int, ensemble_size: int, robust: bool):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.ensemble_size, self.robust = ensemble_size, robust
        self.normalizer = ObservationNormalizer(obs_dim)
        self.init_args: dict = {}  # constructor arguments, saved with the weights (`save_reward_model`)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def head_dim(self) -> int:
        return 2 if self.robust else 1  # (mu, raw log-variance) or r

    def _members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> RewardOutput:
        """obs (B, H, S) and action (B, H, A), or one batch per member (E, B, H, ...) -> `RewardOutput`."""
        x = torch.cat([self.normalizer(obs), action], dim=-1)  # (..., B, H, S+A)
        heads, weights = self._members(x)  # (E, B, H, 1 or 2), (E, B, H) or None
        log_var = soft_bound_log_var(heads[..., 1]) if self.robust else None
        return RewardOutput(reward=heads[..., 0], log_var=log_var, weights=weights)

    @torch.no_grad()
    def predict_members(self, obs: np.ndarray | torch.Tensor, action: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Per-member reward (means) of the consecutive transitions of one episode: (N, S), (N, A) -> (E, N)."""
        return self._episode_rewards([(obs, action)])[0]

    def predict(self, obs: np.ndarray | torch.Tensor, action: np.ndarray | torch.Tensor) -> np.ndarray:
        """Reward for relabelling, the ensemble mean: one episode's consecutive transitions (N, S), (N, A) ->
        (N,) float32 numpy. For the MLP the order does not matter; for the transformer it is the context."""
        return self.predict_members(obs, action).mean(dim=0).cpu().numpy()

    def disagreement(self, obs: np.ndarray | torch.Tensor, action: np.ndarray | torch.Tensor) -> np.ndarray:
        """Std over ensemble members of each transition's reward (N,) (0 for a single member)."""
        return self.predict_members(obs, action).std(dim=0, unbiased=False).cpu().numpy()

    def predict_episodes(self, episodes: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 4096) -> list:
        """Ensemble-mean rewards of several episodes at once: [(obs (T, S), action (T, A))] -> [(T,) float32]."""
        return [r.mean(dim=0).cpu().numpy() for r in self._episode_rewards(episodes, batch_size)]

    @torch.no_grad()
    def _episode_rewards(self, episodes: Sequence[tuple], batch_size: int = 4096) -> list[torch.Tensor]:
        """Per-member rewards (E, T) of each episode, from a sliding causal context.

        Transition t of an episode of T steps is scored at position p_t of the window of C = `context_length`
        steps starting at s_t = max(0, t - C + 1): the C steps ending at t, or, for the first C - 1 steps, the
        episode's first C steps (p_t = t; causal attention, so the later steps of that window are not seen).
        Each reward then has the context it had in training: up to C - 1 earlier steps at positions 0..C-1.
        Windows past an episode's end (T < C) repeat its last step, which causal attention never lets an earlier
        position see. C = 1 (the MLP) scores each transition alone. Cost: N windows of C tokens, in batches of
        `batch_size` windows.
        """
        device, C = self.device, self.context_length
        obs = [torch.as_tensor(np.asarray(o), dtype=torch.float32) for o, _ in episodes]
        act = [torch.as_tensor(np.asarray(a), dtype=torch.float32) for _, a in episodes]
        lengths = [len(a) for a in act]
        for o, a in zip(obs, act):
            if o.ndim != 2 or a.ndim != 2 or len(o) != len(a):
                raise ValueError(f"predict needs obs (N, S) and action (N, A) of one length, got {o.shape}, {a.shape}")
        if sum(lengths) == 0:
            return [torch.zeros(self.ensemble_size, 0) for _ in episodes]
        all_obs, all_act = torch.cat(obs).to(device), torch.cat(act).to(device)  # (N, S), (N, A)
        starts, lasts, positions, offset = [], [], [], 0
        for T in lengths:
            t = torch.arange(T)
            start = (t - C + 1).clamp(min=0)  # (T,) first step of each transition's window
            starts.append(start + offset)  # as rows of all_obs
            lasts.append(torch.full((T,), offset + T - 1))  # the episode's last row: windows never cross it
            positions.append(t - start)
            offset += T
        starts, lasts, positions = (torch.cat(x).to(device) for x in (starts, lasts, positions))  # (N,) each
        window = torch.arange(C, device=device)  # (C,)

        was_training = self.training
        self.eval()
        chunks = []
        for first in range(0, offset, batch_size):
            part = slice(first, first + batch_size)
            rows = torch.minimum(starts[part, None] + window, lasts[part, None])  # (b, C)
            reward = self(all_obs[rows], all_act[rows]).reward  # (E, b, C)
            pos = positions[part]  # (b,)
            chunks.append(reward.gather(2, pos[None, :, None].expand(len(reward), -1, 1))[..., 0])  # (E, b)
        self.train(was_training)
        return list(torch.cat(chunks, dim=1).cpu().split(lengths, dim=1))


class MLPRewardEnsemble(PreferenceRewardModel):
    """E MLPs r(s_t, a_t), Markovian; a segment's score is the sum of its rewards (Bradley-Terry over sums)."""

    kind = "mlp"
    context_length = 1

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        ensemble_size: int = 3,
        activation: str = "relu",
        robust: bool = False,
    ):
        super().__init__(obs_dim, action_dim, ensemble_size, robust)
        self.init_args = dict(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden_dims=list(hidden_dims),
            ensemble_size=ensemble_size,
            activation=activation,
            robust=robust,
        )
        self.net = EnsembleMLP(ensemble_size, obs_dim + action_dim, tuple(hidden_dims), self.head_dim, activation)

    def _members(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        B, H, D = x.shape[-3:]  # x: (B, H, D) shared by the members, or (E, B, H, D)
        flat = x.reshape(B * H, D) if x.dim() == 3 else x.reshape(self.ensemble_size, B * H, D)
        heads = self.net(flat)  # (E, B*H, out)
        return heads.reshape(self.ensemble_size, B, H, self.head_dim), None  # (E, B, H, out)


class _TransformerMember(nn.Module):
    """One Preference Transformer: (B, H, S+A) -> head outputs (B, H, out) and preference weights (B, H)."""

    def __init__(
        self,
        in_dim: int,
        context_length: int,
        embed_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
        out_dim: int,
        weighted_sum: bool,
    ):
        super().__init__()
        self.weighted_sum = weighted_sum
        self.embed = nn.Linear(in_dim, embed_dim)  # one token per step: (s_t, a_t)
        self.position = nn.Embedding(context_length, embed_dim)  # position within the segment
        layer = nn.TransformerEncoderLayer(
            embed_dim, num_heads, 4 * embed_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        final_norm = nn.LayerNorm(embed_dim)  # pre-norm blocks end with a LayerNorm
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=final_norm, enable_nested_tensor=False)
        self.reward_head = nn.Linear(embed_dim, out_dim)  # r_t (or mu_t, raw log sigma_t^2): the attention's values
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        H = x.shape[-2]
        tokens = self.embed(x) + self.position(torch.arange(H, device=x.device))  # (B, H, D)
        causal = nn.Transformer.generate_square_subsequent_mask(H, device=x.device)  # (H, H), -inf above diagonal
        hidden = self.encoder(tokens, mask=causal, is_causal=True)  # (B, H, D): step t sees steps <= t
        heads = self.reward_head(hidden)  # (B, H, out)
        if not self.weighted_sum:
            return heads, None
        scale = 1.0 / math.sqrt(hidden.shape[-1])
        attention = torch.softmax(self.query(hidden) @ self.key(hidden).transpose(-1, -2) * scale, dim=-1)  # (B, H, H)
        return heads, attention.mean(dim=-2)  # (B, H): w_t = mean_i attention[i, t], sums to 1 over t


class PreferenceTransformer(PreferenceRewardModel):
    """Preference Transformer (Kim et al., ICLR 2023): causal transformer over (s_t, a_t) tokens giving
    non-Markovian rewards r_t, and a preference-attention layer scoring a segment as sum_t w_t r_t (module
    docstring). `weighted_sum=True` (our default) uses those weights; the public release's command never turns
    the weighted sum on, `weighted_sum=False` scores a segment by sum_t r_t as it does. An ensemble is E
    independent transformers (each evaluated in turn). `context_length`: the longest segment (positions).
    """

    kind = "transformer"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        context_length: int,
        embed_dim: int = 64,
        num_layers: int = 1,
        num_heads: int = 4,
        dropout: float = 0.0,
        ensemble_size: int = 1,
        weighted_sum: bool = True,
        robust: bool = False,
    ):
        super().__init__(obs_dim, action_dim, ensemble_size, robust)
        self.context_length, self.weighted_sum = context_length, weighted_sum
        self.init_args = dict(
            obs_dim=obs_dim,
            action_dim=action_dim,
            context_length=context_length,
            embed_dim=embed_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
            ensemble_size=ensemble_size,
            weighted_sum=weighted_sum,
            robust=robust,
        )
        args = (obs_dim + action_dim, context_length, embed_dim, num_layers, num_heads, dropout, self.head_dim)
        self.members = nn.ModuleList(_TransformerMember(*args, weighted_sum) for _ in range(ensemble_size))

    def _members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.shape[-2] > self.context_length:
            raise ValueError(f"segments of {x.shape[-2]} steps for a transformer of context {self.context_length}")
        inputs = [x] * self.ensemble_size if x.dim() == 3 else list(x)  # shared (B, H, D) or per member
        outputs = [member(xe) for member, xe in zip(self.members, inputs)]
        heads = torch.stack([h for h, _ in outputs])  # (E, B, H, out)
        weights = torch.stack([w for _, w in outputs]) if self.weighted_sum else None  # (E, B, H)
        return heads, weights


REWARD_MODELS: dict[str, type[PreferenceRewardModel]] = {"mlp": MLPRewardEnsemble, "transformer": PreferenceTransformer}

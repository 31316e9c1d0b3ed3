"""Inverse dynamics model (IDM) of SS-ORL: Zheng, Henaff, Amos & Grover, "Semi-Supervised Offline Reinforcement
Learning with Action-Free Trajectories", ICML 2023 (arXiv:2210.06518).

The IDM predicts the action a_t from the states around it. SS-ORL's first stage fits it by maximum likelihood
on the labelled trajectories (the IDM objective of the paper's training pipeline):

    min_phi  E_{(s, a) ~ D_labelled} [ -log p_phi(a_t | s_{t-k}, ..., s_{t+k}) ],

and its second stage labels the action-free trajectories with the IDM's prediction (the proxy actions).

**State window.** For action a_t (t = 0..T-1 of a trajectory with T+1 observations and T actions) the input
is the states s_{t-k}, ..., s_{t+max(k, 1)}:

    k = 0: (s_t, s_{t+1})                      2 states
    k = 1: (s_{t-1}, s_t, s_{t+1})             3 states (default)
    k = 2: (s_{t-2}, ..., s_{t+2})             5 states

That is the `"symmetric"` window (`window_mode`, ours). The `"past"` window is the reference code's (its
`num_past_transitions` = k): s_{t-k}, ..., s_t, s_{t+1}, k past states and never a state after s_{t+1}:

    k = 0: (s_t, s_{t+1})                      2 states
    k = 1: (s_{t-1}, s_t, s_{t+1})             3 states (the same as the symmetric window)
    k = 2: (s_{t-2}, s_{t-1}, s_t, s_{t+1})    4 states (the symmetric window adds s_{t+2})

The transition s_t -> s_{t+1}, the one a_t causes, is always in the window. At the edges of an episode the
window is padded by repeating the first state (indices below 0 read s_0) and the last state (indices above T
read s_T); windows never cross into another episode. (The reference code pads with zero states instead.)

**Distribution.** Each ensemble member outputs a diagonal Gaussian over pre-tanh actions, squashed by tanh into
(-1, 1) (`embodied_rl.nn.TanhNormal`); actions are assumed to lie in [-1, 1] and are clipped to
+-(1 - action_eps) before the atanh of the likelihood. The proxy action is the ensemble mean of each member's
deterministic prediction tanh(loc), clipped to [-1, 1].

**Input normalisation.** States are standardised with the mean and std of the *training* states (the
validation trajectories never leak into it; `normalize_over="labelled"`, ours), or of every state of the dataset,
labelled and action-free (`normalize_over="all"`, the reference code's: `train_inverse_dynamics(...,
normalization_trajectories=...)` gets them). States carry no action, so using the action-free ones leaks no label.
The statistics are buffers of the model, saved in its state_dict.

**Dropout** (`dropout`, the reference code's 0.1): one dropout layer on the last hidden layer's output, before
the output layer, active in training only (validation and labelling run the model in eval mode).

**Input encoding** (`inputs`, ours; the paper feeds the states). `"states"`: the W standardised states, as in
the paper. `"differences"`: the same window re-expressed, without loss, as s_t and its W-1 consecutive
differences s_{j+1} - s_j, s_t standardised with the states' training statistics and every difference with the
statistics of the training data's one-step differences. The information is the same
(a linear bijection of the window), but where one action moves the state little next to the spread of the
states themselves (Meta-World: the hand moves ~2 mm per step, its position spreads 7-10 cm over the data) a
standardised state window holds the motion at ~2 % of the input scale, while the standardised differences put
it at unit scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.normalization import ObservationNormalizer
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.nn.distributions import TanhNormal
from embodied_rl.nn.ensemble import EnsembleMLP
from embodied_rl.nn.fit import FitSettings, fit, split_validation  # noqa: F401 (re-exported by embodied_rl.labelling)
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

# ---------------------------------------------------------------- state windows


INPUT_ENCODINGS = ("states", "differences")
WINDOW_MODES = ("symmetric", "past")  # symmetric: s_{t-k}..s_{t+max(k,1)} (ours); past: s_{t-k}..s_{t+1} (reference)
NORMALIZE_OVER = ("labelled", "all")


def window_offsets(window: int, mode: str = "symmetric") -> np.ndarray:
    """Time offsets of the states fed to the IDM for action a_t: -k, ..., max(k, 1) ("symmetric") or -k, ..., 1
    ("past", the reference code's k past states, s_t and s_{t+1})."""
    if window < 0:
        raise ValueError(f"window (k) must be >= 0, got {window}")
    if mode not in WINDOW_MODES:
        raise ValueError(f"unknown window mode {mode!r}; valid: {', '.join(WINDOW_MODES)}")
    return np.arange(-window, (max(window, 1) if mode == "symmetric" else 1) + 1)


def window_indices(num_steps: int, window: int, mode: str = "symmetric") -> np.ndarray:
    """(T, W) indices into a trajectory's T+1 observations: row t holds the states of a_t, edge-padded."""
    steps = np.arange(num_steps)[:, None]  # (T, 1)
    return np.clip(steps + window_offsets(window, mode), 0, num_steps)  # (T, W)


def state_windows(observations: np.ndarray, window: int, mode: str = "symmetric") -> np.ndarray:
    """The IDM inputs of one trajectory: (T+1, D) observations -> (T, W, D) state windows."""
    observations = np.asarray(observations)
    return observations[window_indices(len(observations) - 1, window, mode)]


# ---------------------------------------------------------------- model


class InverseDynamicsModel(nn.Module):
    """p(a_t | s_{t-k}, ..., s_{t+max(k,1)}): an ensemble of E MLPs, each a tanh-squashed diagonal Gaussian.

    Inputs are raw state windows (B, W, D), or one batch per member (E, B, W, D); normalisation is inside.
    `inputs` picks the encoding of a window (module docstring): "states" or "differences"; `window_mode` the
    window ("symmetric" or "past"); `dropout` > 0 adds a dropout layer before the output layer.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        window: int = 1,
        hidden_dims: Sequence[int] = (256, 256),
        ensemble_size: int = 1,
        activation: str = "relu",
        min_log_std: float = -5.0,
        max_log_std: float = 2.0,
        action_eps: float = 1e-4,
        inputs: str = "differences",
        window_mode: str = "symmetric",
        dropout: float = 0.0,
    ):
        super().__init__()
        if inputs not in INPUT_ENCODINGS:
            raise ValueError(f"unknown IDM input encoding {inputs!r}; valid: {', '.join(INPUT_ENCODINGS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"IDM dropout must be in [0, 1), got {dropout}")
        self.obs_dim, self.action_dim, self.window, self.inputs = obs_dim, action_dim, window, inputs
        self.window_mode = window_mode
        self.num_states = len(window_offsets(window, window_mode))
        self.anchor = window  # position of s_t in the window
        self.ensemble_size = ensemble_size
        self.min_log_std, self.max_log_std, self.action_eps = min_log_std, max_log_std, action_eps
        self.normalizer = ObservationNormalizer(obs_dim)
        self.difference_normalizer = ObservationNormalizer(obs_dim)  # of s_{t+1} - s_t ("differences" only)
        self.net = EnsembleMLP(ensemble_size, self.num_states * obs_dim, tuple(hidden_dims), 2 * action_dim, activation)
        if dropout > 0:  # the reference code's layout: dropout on the last hidden features, before the output layer
            layers = list(self.net.layers)
            self.net.layers = nn.Sequential(*layers[:-1], nn.Dropout(dropout), layers[-1])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fit_normalizers(self, states: torch.Tensor, differences: torch.Tensor) -> None:
        """Input statistics: every state (M, D) and every one-step difference s_{t+1} - s_t (N, D); those of the
        training trajectories, or of every trajectory of the dataset (`normalize_over="all"`)."""
        self.normalizer.fit(states)
        self.difference_normalizer.fit(differences)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(..., W, D) raw state windows -> (..., W*D) network inputs in the chosen encoding."""
        if self.inputs == "states":
            return self.normalizer(windows).flatten(-2)
        anchor = self.normalizer(windows[..., self.anchor, :])  # (..., D)
        differences = self.difference_normalizer(windows[..., 1:, :] - windows[..., :-1, :])  # (..., W-1, D)
        return torch.cat([anchor, differences.flatten(-2)], dim=-1)

    def distribution(self, windows: torch.Tensor) -> TanhNormal:
        """(B, W, D) or (E, B, W, D) state windows -> TanhNormal with loc and scale (E, B, A)."""
        x = self.encode(windows)  # (..., B, W*D)
        loc, log_std = self.net(x).chunk(2, dim=-1)  # (E, B, A) each
        # Soft bounds on log std (smooth, unlike a clamp, so gradients never vanish at the bounds).
        log_std = self.max_log_std - F.softplus(self.max_log_std - log_std)
        log_std = self.min_log_std + F.softplus(log_std - self.min_log_std)
        return TanhNormal(loc, log_std.exp())

    def nll(self, windows: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of `actions` (B, A) or (E, B, A) under each member: (E,)."""
        log_prob = self.distribution(windows).log_prob(actions, eps=self.action_eps)  # (E, B)
        return -log_prob.mean(dim=-1)

    def predict(self, windows: torch.Tensor) -> torch.Tensor:
        """Proxy actions (B, A): ensemble mean of each member's tanh(loc), clipped to [-1, 1]."""
        return self.distribution(windows).mode.mean(dim=0).clamp(-1.0, 1.0)

    @torch.no_grad()
    def predict_actions(self, observations: np.ndarray, batch_size: int = 16384) -> np.ndarray:
        """Proxy actions for one trajectory: (T+1, D) observations -> (T, A) float32 numpy array."""
        windows = torch.as_tensor(state_windows(observations, self.window, self.window_mode), dtype=torch.float32)
        chunks = [self.predict(chunk.to(self.device)).cpu() for chunk in windows.split(batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.action_dim), np.float32)


# ---------------------------------------------------------------- data


@dataclass
class _WindowData:
    """All transitions of some trajectories, with windows stored as indices to avoid W copies of each state."""

    obs: torch.Tensor  # (M, D): every observation of every trajectory, stacked
    window_idx: torch.Tensor  # (N, W) int64 rows of `obs` forming each transition's window
    actions: torch.Tensor  # (N, A)

    def __len__(self) -> int:
        return self.actions.shape[0]

    def windows(self, idx: torch.Tensor) -> torch.Tensor:
        """(...,) transition indices -> (..., W, D) state windows."""
        return self.obs[self.window_idx[idx]]


def _flat_states(trajectory: Trajectory) -> np.ndarray:
    """(T+1, D) float32 states of a trajectory, or a `DatasetError` saying why the IDM cannot read them."""
    if isinstance(trajectory.observations, dict):
        raise DatasetError("the inverse dynamics model needs array observations (load with obs_key=...)")
    observations = np.asarray(trajectory.observations, dtype=np.float32)  # (T+1, D)
    if observations.ndim != 2:
        raise DatasetError(f"the inverse dynamics model needs flat (T+1, D) states, got {observations.shape}")
    return observations


def _normalization_inputs(
    trajectories: Sequence[Trajectory], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every state (M, D) and every one-step difference s_{t+1} - s_t (N, D) of `trajectories` (actions unread)."""
    states = [_flat_states(t) for t in trajectories]
    differences = [np.diff(s, axis=0) for s in states]  # (T, D) each
    return torch.as_tensor(np.concatenate(states), device=device), torch.as_tensor(
        np.concatenate(differences), device=device
    )


def _window_data(
    trajectories: Sequence[Trajectory], window: int, device: torch.device | str, mode: str = "symmetric"
) -> _WindowData:
    obs, idx, actions, offset = [], [], [], 0
    for trajectory in trajectories:
        observations = _flat_states(trajectory)  # (T+1, D)
        if not np.isfinite(trajectory.actions).all():
            raise DatasetError(f"episode {trajectory.episode_id} has missing (NaN) actions; it is not labelled")
        if np.abs(trajectory.actions).max(initial=0.0) > 1.0 + 1e-3:
            raise DatasetError(
                f"episode {trajectory.episode_id} has actions outside [-1, 1]; the tanh-Gaussian IDM needs "
                "actions rescaled to [-1, 1]"
            )
        obs.append(observations)
        idx.append(window_indices(len(trajectory), window, mode) + offset)
        actions.append(np.asarray(trajectory.actions, dtype=np.float32))
        offset += len(observations)
    return _WindowData(
        obs=torch.as_tensor(np.concatenate(obs), device=device),
        window_idx=torch.as_tensor(np.concatenate(idx), dtype=torch.int64, device=device),
        actions=torch.as_tensor(np.concatenate(actions), device=device),
    )


@torch.no_grad()
def _evaluate(model: InverseDynamicsModel, data: _WindowData, chunk: int = 16384) -> dict[str, float]:
    nll_sum = torch.zeros((), device=data.actions.device)
    squared_error_sum = torch.zeros((), device=data.actions.device)
    for idx in torch.arange(len(data), device=data.actions.device).split(chunk):
        windows, actions = data.windows(idx), data.actions[idx]  # (b, W, D), (b, A)
        nll_sum += model.nll(windows, actions).mean() * len(idx)  # mean over members
        squared_error_sum += (model.predict(windows) - actions).square().sum()
    n = len(data)
    return {"nll": float(nll_sum) / n, "mse": float(squared_error_sum) / (n * model.action_dim)}


def evaluate_inverse_dynamics(model: InverseDynamicsModel, trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Mean NLL (averaged over members) and per-element MSE of the proxy actions on labelled trajectories."""
    was_training = model.training
    model.eval()
    metrics = _evaluate(model, _window_data(trajectories, model.window, model.device, model.window_mode))
    model.train(was_training)
    return metrics


# ---------------------------------------------------------------- training


@dataclass
class IDMConfig:
    """Architecture and training of the IDM (the `idm:` block of configs/ssorl/default.yaml)."""

    hidden_dims: tuple[int, ...] = (256, 256)
    ensemble_size: int = 1
    activation: str = "relu"
    steps: int = 20_000  # Adam updates
    batch_size: int = 256  # per ensemble member (each member draws its own minibatch)
    lr: float = 1e-3
    eval_every: int = 1_000  # validation every N updates (and after the last one)
    val_fraction: float = 0.2  # fraction of labelled trajectories held out for model selection, ...
    min_val_trajectories: int = 2  # ... and at least this many (always leaving >= 1 to train on)
    select_metric: str = "nll"  # nll | mse: validation metric whose best weights are kept
    inputs: str = "differences"  # differences (ours) | states (paper): encoding of the state window (module docstring)
    dropout: float = 0.0  # before the output layer, training only; reference code: 0.1
    normalize_over: str = "labelled"  # labelled (training trajectories) | all (every state of the dataset; reference)
    patience: int = 0  # early stopping: stop after N validations without improvement; 0: off (train all steps)
    progress: bool = False  # tqdm progress bar

    def __post_init__(self) -> None:
        check_field_types(self, "IDM settings", prefix="idm.")
        self.hidden_dims = tuple(self.hidden_dims)
        ranges = {
            **dict.fromkeys(("ensemble_size", "steps", "batch_size", "eval_every"), ">= 1"),
            "lr": "> 0",
            "val_fraction": "[0, 1)",
            "min_val_trajectories": ">= 0",
            "dropout": "[0, 1)",
            "patience": ">= 0",
        }
        check_ranges("IDM settings", vars(self), ranges, prefix="idm.")
        if self.select_metric not in ("nll", "mse"):
            raise ValueError(f"idm.select_metric must be 'nll' or 'mse', got {self.select_metric!r}")
        if self.inputs not in INPUT_ENCODINGS:
            raise ValueError(f"idm.inputs must be one of {', '.join(INPUT_ENCODINGS)}, got {self.inputs!r}")
        if self.normalize_over not in NORMALIZE_OVER:
            raise ValueError(
                f"idm.normalize_over must be one of {', '.join(NORMALIZE_OVER)}, got {self.normalize_over!r}"
            )

    def fit_settings(self) -> FitSettings:
        """The settings of the shared fit loop (`embodied_rl.nn.fit`)."""
        return FitSettings.from_config(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> IDMConfig:
        """From a dict or OmegaConf node; an unknown key is an error naming the known ones."""
        return settings_from_mapping(cls, values, "idm")


@dataclass
class IDMTrainReport:
    """Curves and model selection of one IDM training run (numbers are floats, ready to log or save)."""

    eval_steps: list[int] = field(default_factory=list)
    train_nll: list[float] = field(default_factory=list)  # mean training NLL since the previous evaluation
    val_nll: list[float] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)
    best_step: int = 0  # update whose weights were returned (the last one when there is no validation)
    best_val_nll: float = math.nan
    best_val_mse: float = math.nan
    select_metric: str = "nll"
    train_episode_ids: list[int] = field(default_factory=list)
    val_episode_ids: list[int] = field(default_factory=list)
    num_train_transitions: int = 0
    num_val_transitions: int = 0
    stopped_early: bool = False
    normalize_over: str = "labelled"
    num_normalization_states: int = 0  # states the input statistics were fitted on

    def curve_summary(self) -> str:
        """One line on the validation curve: first, best and last validation NLL and where the best was."""
        if not self.val_nll:
            return "no validation data: the last weights are used"
        first, last = self.val_nll[0], self.val_nll[-1]
        return (
            f"val nll {first:.4g} (step {self.eval_steps[0]}) -> best {self.best_val_nll:.4g} (step {self.best_step}) "
            f"-> last {last:.4g} (step {self.eval_steps[-1]}) on {len(self.val_episode_ids)} held-out trajectories "
            f"({self.num_val_transitions} transitions)"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_validation_trajectories(
    trajectories: Sequence[Trajectory], val_fraction: float, min_val_trajectories: int, seed: int
) -> tuple[list[Trajectory], list[Trajectory]]:
    """Hold out max(round(val_fraction * N), min_val_trajectories) of the N labelled trajectories for model
    selection, never all of them (at least one is left to train on) and none when val_fraction is 0; drawn
    uniformly at random with `seed`. Returns (train, validation), each in the input order."""
    n = len(trajectories)
    if n < 2 or val_fraction <= 0:
        return list(trajectories), []
    wanted = max(int(math.floor(val_fraction * n + 0.5)), min_val_trajectories, 1)
    val_positions = set(np.random.default_rng(seed).choice(n, size=min(n - 1, wanted), replace=False).tolist())
    train = [t for i, t in enumerate(trajectories) if i not in val_positions]
    return train, [t for i, t in enumerate(trajectories) if i in val_positions]


def train_inverse_dynamics(
    labelled: Sequence[Trajectory],
    cfg: IDMConfig | Mapping[str, Any] | None = None,
    window: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    validation: Sequence[Trajectory] | None = None,
    logger: Any = None,
    window_mode: str = "symmetric",
    normalization_trajectories: Sequence[Trajectory] | None = None,
) -> tuple[InverseDynamicsModel, IDMTrainReport]:
    """Fit the IDM by maximum likelihood on `labelled` trajectories (SS-ORL stage 1) with real model selection.

    A `cfg.val_fraction` of the trajectories (at least `cfg.min_val_trajectories`; or the given `validation`
    trajectories) is held out; every
    `cfg.eval_every` updates the validation NLL and MSE are measured, and the weights with the best
    `cfg.select_metric` are restored at the end (`cfg.patience` > 0: training stops after that many validations
    without improvement). Without validation data the final weights are returned. The loop is the shared
    `embodied_rl.nn.fit.fit`; this function builds the data, the model and its loss, and the report.
    `logger` (optional): an object with `log(metrics, step, prefix)`, e.g. `embodied_rl.logging.RunLogger`.
    `window_mode`: "symmetric" or "past" (module docstring). `normalization_trajectories`: with
    `cfg.normalize_over="all"`, the trajectories whose states fit the input statistics (every trajectory of the
    dataset, labelled or not; their actions are never read); with "labelled", the training trajectories do.
    """
    cfg = cfg if isinstance(cfg, IDMConfig) else IDMConfig.from_mapping(cfg)
    if len(labelled) == 0:
        raise DatasetError("no labelled trajectories to train the inverse dynamics model on")
    device = torch.device(device)
    if cfg.normalize_over == "all" and not normalization_trajectories:
        raise ValueError('idm.normalize_over="all" needs the dataset\'s trajectories (normalization_trajectories=...)')
    if validation is None:
        train_trajectories, val_trajectories = split_validation_trajectories(
            labelled, cfg.val_fraction, cfg.min_val_trajectories, seed
        )
    else:
        train_trajectories, val_trajectories = list(labelled), list(validation)
    train = _window_data(train_trajectories, window, device, window_mode)
    val = _window_data(val_trajectories, window, device, window_mode) if val_trajectories else None

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InverseDynamicsModel(
            obs_dim=train.obs.shape[1],
            action_dim=train.actions.shape[1],
            window=window,
            hidden_dims=cfg.hidden_dims,
            ensemble_size=cfg.ensemble_size,
            activation=cfg.activation,
            inputs=cfg.inputs,
            window_mode=window_mode,
            dropout=cfg.dropout,
        )
    model.to(device)
    statistics_of = normalization_trajectories if cfg.normalize_over == "all" else train_trajectories
    normalization_states, normalization_differences = _normalization_inputs(statistics_of, device)
    model.fit_normalizers(normalization_states, normalization_differences)

    def batch_nll(idx: torch.Tensor) -> torch.Tensor:
        return model.nll(train.windows(idx), train.actions[idx])  # (E,), one minibatch (E, B) per member

    fit_report = fit(
        model,
        batch_nll,
        len(train),
        cfg.fit_settings(),
        validate=(lambda: _evaluate(model, val)) if val is not None else None,
        ensemble_size=cfg.ensemble_size,
        seed=seed,
        logger=logger,
        log_prefix="idm",
        loss_name="nll",
        desc="inverse dynamics",
    )
    best = fit_report.best_metrics
    report = IDMTrainReport(
        eval_steps=fit_report.eval_steps,
        train_nll=fit_report.train_loss,
        val_nll=fit_report.val_metrics.get("nll", []),
        val_mse=fit_report.val_metrics.get("mse", []),
        best_step=fit_report.best_step,
        best_val_nll=best.get("nll", math.nan),
        best_val_mse=best.get("mse", math.nan),
        select_metric=cfg.select_metric,
        train_episode_ids=[t.episode_id for t in train_trajectories],
        val_episode_ids=[t.episode_id for t in val_trajectories],
        num_train_transitions=len(train),
        num_val_transitions=len(val) if val is not None else 0,
        stopped_early=fit_report.stopped_early,
        normalize_over=cfg.normalize_over,
        num_normalization_states=len(normalization_states),
    )
    model.eval()
    return model, report

"""SS-ORL data side: Zheng, Henaff, Amos & Grover, "Semi-Supervised Offline Reinforcement Learning with
Action-Free Trajectories", ICML 2023 (arXiv:2210.06518).

The semi-supervised setting: only some trajectories carry actions (labelled), the others hold states and
rewards only (unlabelled). SS-ORL's pipeline has three stages:

1. train an inverse dynamics model (IDM) on the labelled trajectories (`embodied_rl.labelling.inverse_dynamics`);
2. label the unlabelled trajectories with the IDM's proxy actions;
3. train any offline RL agent (IQL, TD3+BC, ...) on the true and proxy-labelled trajectories together.

This module builds the stage-3 dataset; the offline RL trainer is separate. Flow, top to bottom:

    trajectories --split_trajectories--> labelled, unlabelled (actions hidden)
                 --train_inverse_dynamics(labelled)--> IDM           (semi_supervised arm only)
                 --build_arm_dataset(arm, ...)--> list[Trajectory]    (labelled_only | semi_supervised | oracle
                                                                        | control_random | control_shuffled)

The two control arms measure what the proxy actions are worth: they train on the same states and rewards as the
semi-supervised arm, with the action-free steps given actions that carry no information about them, drawn
uniformly from the action space (`control_random`) or a random permutation of the labelled trajectories'
actions (`control_shuffled`: the labelled action distribution, paired with the wrong states). A semi-supervised
arm no better than its controls gains from the added states and rewards, not from its proxy actions.

`prepare_ssorl_dataset` runs the whole flow from a config (configs/ssorl/default.yaml); `save_arm_dataset` /
`load_arm_dataset` keep its result with a run, so a resumed run trains on the same proxy actions without
training the IDM again. `SSORLPipeline` (at the end) is the method as a run: `experiment=ssorl`.

The split reproduces the paper's "coupled" setting, where the labelled data is small *and* of low quality: the
labelled trajectories are a `labelled_fraction` of the dataset drawn from its lowest-return `return_quantile`
(the paper's headline result labels 10% of the trajectories, drawn from the lower half of returns).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.devices import resolve_device
from embodied_rl.files import atomic_write, write_json
from embodied_rl.labelling.inverse_dynamics import IDMConfig, InverseDynamicsModel, train_inverse_dynamics
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.trainers.assembly import Run
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

ARMS = ("labelled_only", "semi_supervised", "oracle", "control_random", "control_shuffled")
CONTROL_ARMS = ("control_random", "control_shuffled")
WINDOW_MODES = ("symmetric", "past")


@dataclass
class SSORLConfig:
    """The settings of `prepare_ssorl_dataset`, as in configs/ssorl/default.yaml (its keys are these fields)."""

    arm: str = "semi_supervised"  # labelled_only | semi_supervised | oracle | control_random | control_shuffled
    labelled_fraction: float = 0.1  # of all trajectories keep their actions, ...
    return_quantile: float = 0.5  # ... drawn from the lowest-return part of this size
    window: int = 1  # k: the IDM sees s_{t-k}..s_{t+max(k,1)} (symmetric) or s_{t-k}..s_{t+1} (past)
    window_mode: str = "symmetric"  # symmetric (ours) | past (the reference code's num_past_transitions)
    idm: IDMConfig = field(default_factory=IDMConfig)

    def __post_init__(self) -> None:
        check_field_types(self, "ssorl settings", prefix="ssorl.")  # window=2.5 is not window 2
        if self.arm not in ARMS:
            raise ValueError(f"unknown SS-ORL arm {self.arm!r}; valid arms: {', '.join(ARMS)}")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"ssorl.window_mode must be one of {', '.join(WINDOW_MODES)}, got {self.window_mode!r}")
        if not isinstance(self.idm, IDMConfig):
            self.idm = IDMConfig.from_mapping(self.idm)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> SSORLConfig:
        """From a dict or OmegaConf node (missing keys take the defaults); an unknown key is an error naming the
        known ones."""
        return settings_from_mapping(cls, values, "ssorl")


@dataclass
class ActionFreeTrajectory(Trajectory):
    """A trajectory whose actions are hidden: `actions` is all NaN (so any use of them is visible at once).

    `true_actions` (T, A) keeps the hidden actions for diagnosis (proxy-action error) and for the oracle arm
    only; nothing in the semi-supervised path reads it.
    """

    true_actions: np.ndarray | None = field(default=None, repr=False)


def _trajectory_fields(trajectory: Trajectory) -> dict[str, Any]:
    """The `Trajectory` fields of `trajectory` (arrays shared, not copied)."""
    return {f.name: getattr(trajectory, f.name) for f in fields(Trajectory)}


def hide_actions(trajectory: Trajectory) -> ActionFreeTrajectory:
    """A copy of `trajectory` with NaN actions, the true ones moved to `true_actions`. Other arrays are shared."""
    actions = np.asarray(trajectory.actions)
    dtype = np.result_type(actions.dtype, np.float32)
    return ActionFreeTrajectory(
        **{**_trajectory_fields(trajectory), "actions": np.full(actions.shape, np.nan, dtype=dtype)},
        true_actions=actions.copy(),
    )


def true_actions_of(trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """The true actions of each trajectory: `true_actions` of an `ActionFreeTrajectory`, else `actions`."""
    out = []
    for trajectory in trajectories:
        actions = trajectory.true_actions if isinstance(trajectory, ActionFreeTrajectory) else trajectory.actions
        if actions is None or not np.isfinite(actions).all():
            raise DatasetError(f"the true actions of episode {trajectory.episode_id} are not available")
        out.append(actions)
    return out


# ---------------------------------------------------------------- 1. split


def split_trajectories(
    trajectories: Sequence[Trajectory],
    labelled_fraction: float = 0.1,
    return_quantile: float = 0.5,
    seed: int = 0,
) -> tuple[list[Trajectory], list[ActionFreeTrajectory]]:
    """Split a fully labelled dataset into labelled and action-free trajectories (the "coupled" setting).

    Of N trajectories, n_l = round(labelled_fraction * N) (at least 1) are labelled, drawn uniformly without
    replacement from the low-return pool: the ceil(return_quantile * N) trajectories of lowest return (ties
    broken by position). return_quantile=1 draws from the whole dataset. Every other trajectory becomes an
    `ActionFreeTrajectory` (NaN actions, true actions kept apart for diagnosis).

    Returns (labelled, unlabelled), each in dataset order. The same seed gives the same split.
    """
    n = len(trajectories)
    ranges = {"labelled_fraction": "(0, 1)", "return_quantile": "(0, 1]"}
    check_ranges("split settings", locals(), ranges)  # locals() here: the arguments
    if n < 2:
        raise DatasetError(f"a labelled/unlabelled split needs at least 2 trajectories, got {n}")
    num_labelled = max(1, int(math.floor(labelled_fraction * n + 0.5)))
    pool_size = int(math.ceil(return_quantile * n - 1e-9))
    if num_labelled > pool_size:
        raise ValueError(
            f"labelled_fraction={labelled_fraction} asks for {num_labelled} labelled trajectories, but the lowest "
            f"{return_quantile:.0%} of returns holds only {pool_size} of {n}; lower labelled_fraction or raise "
            "return_quantile"
        )
    if num_labelled >= n:
        raise DatasetError(f"labelled_fraction={labelled_fraction} of {n} trajectories leaves none unlabelled")

    returns = np.array([t.episode_return for t in trajectories])  # (N,)
    pool = np.argsort(returns, kind="stable")[:pool_size]  # positions of the lowest-return trajectories
    chosen = set(np.random.default_rng(seed).choice(pool, size=num_labelled, replace=False).tolist())
    labelled = [t for i, t in enumerate(trajectories) if i in chosen]
    unlabelled = [hide_actions(t) for i, t in enumerate(trajectories) if i not in chosen]
    return labelled, unlabelled


# ---------------------------------------------------------------- 2. label


def _missing_steps(trajectory: Trajectory) -> np.ndarray:
    """(T,) bool: steps whose action is unknown (any NaN in the action vector)."""
    return ~np.isfinite(np.asarray(trajectory.actions, dtype=np.float64)).all(axis=-1)


def label_trajectories(model: InverseDynamicsModel, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """SS-ORL stage 2: fill every missing (NaN) action with the IDM's proxy action; known actions stay.

    A trajectory with no missing action is returned as is (the same object). Any other comes back as a plain
    `Trajectory` (never carrying `true_actions`) with the proxy actions (ensemble mean of tanh(loc), in
    [-1, 1]) at its missing steps and `infos["proxy_action"]` (T,) marking them.
    """
    out: list[Trajectory] = []
    for trajectory in trajectories:
        missing = _missing_steps(trajectory)  # (T,)
        if not missing.any():
            out.append(trajectory)
            continue
        proxy = model.predict_actions(trajectory.observations)  # (T, A)
        actions = np.where(missing[:, None], proxy, trajectory.actions).astype(np.float32)
        infos = {**trajectory.infos, "proxy_action": missing}
        out.append(Trajectory(**{**_trajectory_fields(trajectory), "actions": actions, "infos": infos}))
    return out


def action_error(
    model: InverseDynamicsModel, trajectories: Sequence[Trajectory], true_actions: Sequence[np.ndarray]
) -> dict[str, float]:
    """Diagnosis only: error of the IDM's proxy actions against the hidden true actions, over all steps.

    mse / mae: mean over steps and action dims; max_abs: worst element; explained_variance: 1 - mse / mean over
    action dims of each dim's variance (1 is perfect, 0 is no better than predicting each dim's mean).
    """
    if len(trajectories) != len(true_actions):
        raise ValueError(f"{len(trajectories)} trajectories but {len(true_actions)} arrays of true actions")
    if len(trajectories) == 0:
        return {"mse": math.nan, "mae": math.nan, "max_abs": math.nan, "explained_variance": math.nan, "steps": 0}
    proxy = np.concatenate([model.predict_actions(t.observations) for t in trajectories])  # (N, A)
    return _error_statistics(proxy, np.concatenate([np.asarray(a, dtype=np.float32) for a in true_actions]))


def _error_statistics(proxy: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """mse, mae, max_abs, explained_variance and steps of stand-in actions (N, A) against the true ones (N, A)."""
    if proxy.shape != truth.shape:
        raise ValueError(f"proxy actions {proxy.shape} and true actions {truth.shape} differ in shape")
    error = proxy - truth
    mse = float(np.mean(error**2))
    variance = float(np.var(truth, axis=0).mean())  # per dim, so differences between dims' means do not count
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(error))),
        "max_abs": float(np.max(np.abs(error))),
        "explained_variance": 1.0 - mse / variance if variance > 0 else math.nan,
        "steps": int(len(truth)),
    }


def control_actions(
    arm: str,
    labelled: Sequence[Trajectory],
    unlabelled: Sequence[Trajectory],
    seed: int = 0,
    action_low: np.ndarray | float = -1.0,
    action_high: np.ndarray | float = 1.0,
) -> list[np.ndarray]:
    """The stand-in actions of a control arm, one (T, A) float32 array per action-free trajectory:

    - `control_random`: every element uniform in [action_low, action_high] (per dimension), independent of the
      states;
    - `control_shuffled`: the labelled trajectories' actions, all of them pooled, in a random order: the pool is
      repeated as often as the action-free steps need (each labelled action is used floor(n_u / n_l) or that + 1
      times) and each repetition is a fresh permutation, so the stand-ins follow the labelled action
      distribution but are paired with unrelated states.

    Only the labelled actions and the action-free trajectories' lengths are read; the hidden true actions never
    are. The same seed gives the same actions.
    """
    if arm not in CONTROL_ARMS:
        raise ValueError(f"{arm!r} is not a control arm; control arms: {', '.join(CONTROL_ARMS)}")
    steps = [len(t) for t in unlabelled]
    total = sum(steps)
    rng = np.random.default_rng([seed, 20231])  # its own stream: the split's draws are not shifted
    if arm == "control_random":
        action_dim = (
            np.asarray(labelled[0].actions).shape[1] if labelled else np.asarray(unlabelled[0].actions).shape[1]
        )
        low = np.broadcast_to(np.asarray(action_low, dtype=np.float64), (action_dim,))
        high = np.broadcast_to(np.asarray(action_high, dtype=np.float64), (action_dim,))
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise ValueError(f"control_random needs a bounded action space, got low={low}, high={high}")
        flat = rng.uniform(low, high, size=(total, action_dim)).astype(np.float32)  # (sum T, A)
    else:
        pool = np.concatenate([np.asarray(t.actions, dtype=np.float32) for t in labelled])  # (n_l, A)
        if len(pool) == 0 or not np.isfinite(pool).all():
            raise DatasetError("control_shuffled needs labelled trajectories with finite actions")
        repeats = -(-total // len(pool))  # ceil
        order = np.concatenate([rng.permutation(len(pool)) for _ in range(repeats)])[:total]
        flat = pool[order]  # (sum T, A)
    return np.split(flat, np.cumsum(steps)[:-1])


def fill_actions(trajectories: Sequence[Trajectory], actions: Sequence[np.ndarray]) -> list[Trajectory]:
    """Plain `Trajectory` copies of `trajectories` whose missing (NaN) steps take `actions` (one (T, A) array each);
    known actions stay, the filled steps are marked in `infos["proxy_action"]` (T,) as `label_trajectories` does."""
    out = []
    for trajectory, filled in zip(trajectories, actions, strict=True):
        missing = _missing_steps(trajectory)  # (T,)
        values = np.where(missing[:, None], filled, trajectory.actions).astype(np.float32)
        infos = {**trajectory.infos, "proxy_action": missing}
        out.append(Trajectory(**{**_trajectory_fields(trajectory), "actions": values, "infos": infos}))
    return out


# ---------------------------------------------------------------- 3. arms


def build_arm_dataset(
    arm: str,
    labelled: Sequence[Trajectory],
    unlabelled: Sequence[Trajectory],
    model: InverseDynamicsModel | None = None,
    control: Sequence[np.ndarray] | None = None,
) -> list[Trajectory]:
    """The offline RL dataset of one experimental arm (labelled trajectories first, then the others):

    - `labelled_only`: the labelled trajectories alone (the baseline that ignores action-free data);
    - `semi_supervised`: SS-ORL, labelled + unlabelled with the IDM's proxy actions (needs `model`);
    - `oracle`: every trajectory with its true actions (the fully labelled upper bound);
    - `control_random` / `control_shuffled`: labelled + unlabelled with uninformative stand-in actions (needs
      `control`, from `control_actions`), marked like proxy actions.
    """
    if arm == "labelled_only":
        return list(labelled)
    if arm == "semi_supervised":
        if model is None:
            raise ValueError("the semi_supervised arm needs a trained inverse dynamics model (model=...)")
        return list(labelled) + label_trajectories(model, unlabelled)
    if arm == "oracle":
        restored = [
            Trajectory(**{**_trajectory_fields(t), "actions": actions})
            for t, actions in zip(unlabelled, true_actions_of(unlabelled))
        ]
        return list(labelled) + restored
    if arm in CONTROL_ARMS:
        if control is None:
            raise ValueError(f"the {arm} arm needs its stand-in actions (control=control_actions(...))")
        return list(labelled) + fill_actions(unlabelled, control)
    raise ValueError(f"unknown SS-ORL arm {arm!r}; valid arms: {', '.join(ARMS)}")


# ---------------------------------------------------------------- all stages from a config


def prepare_ssorl_dataset(
    trajectories: Sequence[Trajectory],
    cfg: SSORLConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    logger: Any = None,
    device: str | torch.device = "cpu",
    action_low: np.ndarray | float = -1.0,
    action_high: np.ndarray | float = 1.0,
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Split -> (IDM training -> labelling, for the semi_supervised arm; stand-in actions, for a control arm) ->
    the arm's dataset.

    `cfg`: an `SSORLConfig`, or a mapping with its keys (those of configs/ssorl/default.yaml: arm, labelled_fraction,
    return_quantile, window, window_mode, idm); missing keys take the defaults. `logger` (optional):
    `log(metrics, step, prefix)` and `summary(text)`, e.g. `embodied_rl.logging.RunLogger`; the IDM curves are
    logged under `idm/`. `action_low` / `action_high`: the action space's bounds (control_random draws in them).
    Returns the dataset and diagnostics (split sizes and returns, IDM curves and best step, the error of the proxy
    or stand-in actions on the unlabelled part).
    """
    cfg = cfg if isinstance(cfg, SSORLConfig) else SSORLConfig.from_mapping(cfg)
    arm, window, idm_cfg = cfg.arm, cfg.window, cfg.idm

    labelled, unlabelled = split_trajectories(
        trajectories,
        labelled_fraction=cfg.labelled_fraction,
        return_quantile=cfg.return_quantile,
        seed=seed,
    )
    labelled_returns = [t.episode_return for t in labelled]
    unlabelled_returns = [t.episode_return for t in unlabelled]
    diagnostics: dict[str, Any] = {
        "arm": arm,
        "num_trajectories": len(trajectories),
        "num_labelled": len(labelled),
        "num_unlabelled": len(unlabelled),
        "num_labelled_steps": sum(len(t) for t in labelled),
        "num_unlabelled_steps": sum(len(t) for t in unlabelled),
        "labelled_return_mean": float(np.mean(labelled_returns)),
        "labelled_return_max": float(np.max(labelled_returns)),
        "unlabelled_return_mean": float(np.mean(unlabelled_returns)),
    }
    if logger is not None:
        logger.summary(
            f"[ssorl] split: {len(labelled)} labelled (mean return {diagnostics['labelled_return_mean']:.1f}), "
            f"{len(unlabelled)} unlabelled (mean return {diagnostics['unlabelled_return_mean']:.1f})"
        )

    model, control = None, None
    if arm == "semi_supervised":
        model, report = train_inverse_dynamics(
            labelled,
            idm_cfg,
            window=window,
            seed=seed,
            device=resolve_device(device),
            logger=logger,
            window_mode=cfg.window_mode,
            normalization_trajectories=list(labelled) + list(unlabelled),  # read only with normalize_over=all
        )
        error = action_error(model, unlabelled, true_actions_of(unlabelled))
        diagnostics["idm"] = report.as_dict()
        diagnostics.update({f"proxy_action_{key}": value for key, value in error.items()})
        if logger is not None:
            logger.summary(
                f"[ssorl] IDM: best step {report.best_step}, val nll {report.best_val_nll:.4g}, val mse "
                f"{report.best_val_mse:.4g}; proxy-action mse on unlabelled {error['mse']:.4g}"
            )
            logger.summary(f"[ssorl] IDM validation curve: {report.curve_summary()}")
    elif arm in CONTROL_ARMS:
        control = control_actions(arm, labelled, unlabelled, seed=seed, action_low=action_low, action_high=action_high)
        truth = np.concatenate([np.asarray(a, dtype=np.float32) for a in true_actions_of(unlabelled)])
        error = _error_statistics(np.concatenate(control), truth)  # diagnosis only: what the stand-ins are worth
        diagnostics.update({f"proxy_action_{key}": value for key, value in error.items()})
        if logger is not None:
            logger.summary(
                f"[ssorl] {arm}: uninformative actions on the {len(unlabelled)} action-free trajectories; their mse "
                f"against the hidden actions {error['mse']:.4g} (explained variance {error['explained_variance']:.3g})"
            )

    dataset = build_arm_dataset(arm, labelled, unlabelled, model, control)
    diagnostics["num_dataset_trajectories"] = len(dataset)
    diagnostics["num_dataset_steps"] = sum(len(t) for t in dataset)
    return dataset, diagnostics


# ---------------------------------------------------------------- keeping an arm's dataset with its run


def save_arm_dataset(path: str | Path, dataset: Sequence[Trajectory]) -> None:
    """Write what makes `dataset` (an arm's, from `prepare_ssorl_dataset`) differ from the source dataset: its
    episode ids in order and its actions, proxy actions marked. Written atomically (temporary file + rename),
    so a crash never leaves half a file; `load_arm_dataset` rebuilds the dataset from it.
    """
    path = Path(path)
    steps = [len(t) for t in dataset]
    proxy = [t.infos.get("proxy_action", np.zeros(n, dtype=bool)) for t, n in zip(dataset, steps)]
    arrays = {
        "episode_ids": np.array([t.episode_id for t in dataset], dtype=np.int64),  # (E,)
        "steps": np.array(steps, dtype=np.int64),  # (E,)
        "returns": np.array([t.episode_return for t in dataset], dtype=np.float64),  # (E,): to recognise episodes
        "actions": np.concatenate([np.asarray(t.actions, dtype=np.float32) for t in dataset]),  # (sum steps, A)
        "proxy_action": np.concatenate(proxy).astype(bool),  # (sum steps,)
    }
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_arm_dataset(trajectories: Sequence[Trajectory], path: str | Path) -> list[Trajectory]:
    """The arm dataset saved by `save_arm_dataset`, rebuilt from the source dataset's `trajectories`: the same
    episodes in the same order, with the saved (true or proxy) actions. A `DatasetError` if the source dataset
    is not the one the file was made from (an episode id missing, or another length or return).
    """
    with np.load(path) as stored:
        episode_ids, steps, returns = stored["episode_ids"], stored["steps"], stored["returns"]
        actions, proxy = stored["actions"], stored["proxy_action"]
    by_id = {t.episode_id: t for t in trajectories}
    if len(by_id) != len(trajectories):
        raise DatasetError("the dataset's episode ids are not unique: cannot match it with a saved arm dataset")
    out: list[Trajectory] = []
    starts = np.cumsum(steps) - steps
    for episode_id, start, length, episode_return in zip(episode_ids.tolist(), starts, steps.tolist(), returns):
        source = by_id.get(episode_id)
        if source is None or len(source) != length or not np.isclose(source.episode_return, episode_return):
            found = "no such episode" if source is None else f"{len(source)} steps, return {source.episode_return:g}"
            raise DatasetError(
                f"{path} was made from another dataset: its episode {episode_id} has {length} steps, return "
                f"{episode_return:g}; the dataset has {found}"
            )
        infos = dict(source.infos)
        if proxy[start : start + length].any():
            infos["proxy_action"] = proxy[start : start + length]
        fields_ = {**_trajectory_fields(source), "actions": actions[start : start + length], "infos": infos}
        out.append(Trajectory(**fields_))
    return out


# ---------------------------------------------------------------- the pipeline: split, label, hand off to IQL / TD3+BC


class SSORLPipeline(Pipeline):
    """SS-ORL as a run (`experiment=ssorl`): the dataset of `trainer.dataset` -> this arm's dataset
    (`prepare_ssorl_dataset`) -> the offline learner of `agent`.

    Outputs: ssorl.json (split, IDM report, proxy-action error), ssorl_dataset.npz (the arm's actions, so a resumed
    run trains on the same data without training the IDM again) and idm/ (the IDM's curves on their own step axis,
    semi_supervised arm only). The proxy-action error is also logged at step 0 under `ssorl/`.
    """

    name = "ssorl"
    settings_class = SSORLConfig
    trainer_kinds = ("offline",)
    outputs = ("ssorl.json", "ssorl_dataset.npz", "ssorl_dataset.npz.tmp", "idm")
    resumable = ("idm.progress",)
    added_later = {
        "idm.patience": 0,  # 2026-12-07: early stopping of the IDM (0: off, as before)
        # 2026-12 (issue 24): the reference code's settings, each with the value that keeps older runs' behaviour
        "window_mode": "symmetric",
        "idm.dropout": 0.0,
        "idm.normalize_over": "labelled",
        "idm.min_val_trajectories": 1,
    }

    def run(self, run: Run) -> dict[str, Any]:
        return run.train_offline(prepare=self.prepare)

    def prepare(self, run: Run, trajectories: list[Trajectory], env: Any) -> list[Trajectory]:
        """The arm's dataset: kept from the run directory when the run resumes, else made and saved there."""
        saved, report = run.run_dir / "ssorl_dataset.npz", run.run_dir / "ssorl.json"
        if run.resuming and saved.exists() and report.exists():  # the same data as before, no IDM training again
            dataset = load_arm_dataset(trajectories, saved)
            diagnostics = json.loads(report.read_text())
            run.logger.summary(
                f"[ssorl] resumed with the {diagnostics['arm']} arm's dataset of {saved.name} (the IDM is not trained "
                f"again): {diagnostics['num_dataset_trajectories']} trajectories"
            )
            return dataset
        # a new run, or a resume of one made before runs kept their dataset
        shutil.rmtree(run.run_dir / "idm", ignore_errors=True)  # the curves of an IDM trained again start afresh
        idm_logger = run.logger_for("idm") if self.settings.arm == "semi_supervised" else None
        space = getattr(env, "action_space", None)  # control_random draws in the env's action bounds
        bounds = (space.low, space.high) if hasattr(space, "low") and hasattr(space, "high") else (-1.0, 1.0)
        try:
            dataset, diagnostics = prepare_ssorl_dataset(
                trajectories,
                self.settings,
                seed=run.seed,
                logger=idm_logger or run.logger,
                device=str(run.device),
                action_low=bounds[0],
                action_high=bounds[1],
            )
        finally:
            if idm_logger is not None:
                idm_logger.close()
        save_arm_dataset(saved, dataset)
        write_json(report, diagnostics)
        proxy = {k: v for k, v in diagnostics.items() if k.startswith("proxy_action_")}
        if proxy and not run.resuming:  # diagnosis only (never trained on); a resumed run has its step-0 row
            run.logger.log(proxy, step=0, prefix="ssorl")
        return dataset

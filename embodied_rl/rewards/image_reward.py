"""Image reward model: a reward r(o) of one rendered frame, learned from preferences between pairs of frames.

RL-VLM-F (Wang et al., ICML 2024) asks a vision-language model which of two rendered frames shows more progress on
the task, and fits a reward model on single images with those labels; the offline version (Venkataraman et al.
2024) does the same on a fixed dataset's frames and relabels it for an offline learner (IQL). This module is the
reward-model half: the VLM query lives in `embodied_rl.labelling`.

**Model.** `ImageRewardEnsemble`: E members, each a CNN (`embodied_rl.nn.cnn.ConvEncoder`, the SAC-AE / DrQ
encoder) followed by an MLP to one scalar, r_e(o). Frames are uint8 (..., H, W, 3), any leading dims. The
reward is the ensemble mean r(o) = (1/E) sum_e r_e(o); the disagreement is the std over the members.

**Loss.** A pair of frames (o_1, o_2) with label y = P[frame 1 preferred] -- the convention of
`embodied_rl.data.PreferencePairs` and `bradley_terry_loss`: 1.0 frame 1 preferred, 0.0 frame 2, 0.5 a tie,
anything between a soft label -- is fitted by the Bradley-Terry cross-entropy with the frame's reward as the score
(a segment of one step):

    P[o_1 > o_2] = sigmoid(r_e(o_1) - r_e(o_2)),
    L_e = -[ y log sigmoid(r_e(o_1) - r_e(o_2)) + (1 - y) log sigmoid(r_e(o_2) - r_e(o_1)) ]

(Christiano et al. 2017, Eq. 1; RL-VLM-F Sec. 4). Each member has its own loss on its own minibatch of pairs,
drawn by the shared fit loop (`embodied_rl.nn.fit`), which also holds out validation pairs, keeps the weights with
the best validation loss and stops early when asked.

**Relabelling.** Transition t (s_t, a_t -> s_{t+1}) gets the reward of the frame it leads to, r(frames[t + 1]):
the VLM judged where a frame is, so the reward of an action is that of the state it reaches.

**Memory.** Frames stay uint8 on the host (25k pairs of 128x128 frames are ~2.4 GB); each minibatch is gathered
there, moved to the model's device and converted to floats inside the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.devices import resolve_device
from embodied_rl.files import atomic_write
from embodied_rl.nn.augment import random_shift
from embodied_rl.nn.cnn import ConvEncoder
from embodied_rl.nn.fit import FitSettings, fit, split_validation
from embodied_rl.nn.mlp import mlp
from embodied_rl.rewards.preference import (
    TRAINING_RANGES,
    RewardTrainReport,
    bradley_terry_loss,
    head_and_selection_problems,
)
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

# ---------------------------------------------------------------- settings


@dataclass
class ImageRewardConfig:
    """Architecture and training of the image reward model (the `reward:` block of a pipeline that learns from
    frame preferences). The encoder defaults are the project's `ConvEncoder` (SAC-AE / DrQ); see
    docs/reward_models.md for the update rate on a CPU."""

    ensemble_size: int = 3  # members, each with its own init and minibatches
    feature_dim: int = 50  # encoder output width
    num_filters: int = 32  # channels of every conv layer
    num_layers: int = 4  # 3x3 convs: the first with stride 2, the others stride 1
    hidden_dims: tuple[int, ...] = (256, 256)  # MLP from the features to the scalar reward
    activation: str = "relu"  # MLP
    augment: bool = True  # DrQ random shift of every training frame (docs/reward_models.md: why on by default)
    shift_pad: int = 4  # random shift: up to this many pixels each way
    steps: int = 3_000  # Adam updates
    batch_size: int = 64  # pairs per minibatch (per ensemble member)
    lr: float = 3e-4
    eval_every: int = 250  # validation every N updates (and after the last one)
    val_fraction: float = 0.1  # fraction of the pairs held out (>= 1 pair when there are >= 2)
    select_metric: str = "loss"  # loss (validation cross-entropy) | error (1 - validation accuracy): best weights
    patience: int = 0  # early stopping after N validations without improvement; 0: off
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N

    def __post_init__(self) -> None:
        check_field_types(self, "image reward model settings", prefix="reward.")
        self.hidden_dims = tuple(self.hidden_dims)
        ranges = {
            **dict.fromkeys(("ensemble_size", "feature_dim", "num_filters", "num_layers"), ">= 1"),
            "shift_pad": ">= 0",
            **TRAINING_RANGES,
        }
        check_ranges("image reward model settings", vars(self), ranges, prefix="reward.")
        problems = head_and_selection_problems(self)
        if problems:
            raise ValueError(f"invalid image reward model settings: {', '.join(problems)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ImageRewardConfig:
        """From a dict or OmegaConf node; an unknown key is an error naming the known ones."""
        return settings_from_mapping(cls, values, "image reward model")

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["hidden_dims"] = list(self.hidden_dims)
        return values


# ---------------------------------------------------------------- model


class ImageRewardEnsemble(nn.Module):
    """E members r_e(o) = MLP(ConvEncoder(o)), each a scalar reward of one uint8 frame (H, W, 3)."""

    kind = "image"

    def __init__(
        self,
        image_shape: Sequence[int],
        ensemble_size: int = 3,
        feature_dim: int = 50,
        num_filters: int = 32,
        num_layers: int = 4,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
    ):
        super().__init__()
        image_shape = tuple(int(x) for x in image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 3:
            raise ValueError(f"image_shape must be (H, W, 3), got {image_shape}")
        smallest = 4 * num_layers - 1  # stride-2 conv to (H - 3) // 2 + 1 pixels, then each conv takes 2 away
        if min(image_shape[:2]) < smallest:
            raise ValueError(f"frames of {image_shape[0]}x{image_shape[1]} are too small for {num_layers} conv layers")
        self.image_shape, self.ensemble_size = image_shape, ensemble_size
        self.init_args = dict(  # saved with the weights (`save_image_reward_model`)
            image_shape=list(image_shape),
            ensemble_size=ensemble_size,
            feature_dim=feature_dim,
            num_filters=num_filters,
            num_layers=num_layers,
            hidden_dims=list(hidden_dims),
            activation=activation,
        )
        self.members = nn.ModuleList(
            nn.Sequential(
                ConvEncoder(image_shape, feature_dim, num_filters, num_layers),
                mlp(feature_dim, hidden_dims, 1, activation),
            )
            for _ in range(ensemble_size)
        )

    @classmethod
    def from_config(cls, image_shape: Sequence[int], cfg: ImageRewardConfig) -> ImageRewardEnsemble:
        """The model `cfg` describes, for frames of `image_shape` (H, W, 3)."""
        arch = ("ensemble_size", "feature_dim", "num_filters", "num_layers", "hidden_dims", "activation")
        return cls(image_shape, **{name: getattr(cfg, name) for name in arch})

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, frames: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """Each member's reward: frames (..., H, W, 3) uint8 shared by the members -> (E, ...); with
        `per_member=True`, one batch per member (E, ..., H, W, 3) -> (E, ...)."""
        self._check_frames(frames)
        if per_member:
            if frames.shape[0] != self.ensemble_size:
                raise ValueError(f"per-member frames need a leading dim of {self.ensemble_size}, got {frames.shape}")
            return torch.stack([member(x)[..., 0] for member, x in zip(self.members, frames)])
        return torch.stack([member(frames)[..., 0] for member in self.members])

    def _check_frames(self, frames: torch.Tensor | np.ndarray) -> None:
        if frames.dtype not in (torch.uint8, np.uint8):
            raise ValueError(f"frames must be uint8 images (0-255), got dtype {frames.dtype}")
        if tuple(frames.shape[-3:]) != self.image_shape:
            raise ValueError(f"frames of shape {tuple(frames.shape)} for a model of images {self.image_shape}")

    @torch.no_grad()
    def predict_members(self, frames: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Per-member rewards of frames (..., H, W, 3) uint8 -> (E, ...) float32 on the CPU, in eval mode and in
        batches of `batch_size` frames moved to the model's device one at a time."""
        self._check_frames(frames)
        frames = torch.as_tensor(frames)
        leading = frames.shape[:-3]
        flat = frames.reshape(-1, *self.image_shape)  # (N, H, W, 3)
        was_training = self.training
        self.eval()
        chunks = [self(chunk.to(self.device)).cpu() for chunk in flat.split(batch_size)]  # (E, b) each
        self.train(was_training)
        rewards = torch.cat(chunks, dim=1) if chunks else torch.zeros(self.ensemble_size, 0)
        return rewards.reshape(self.ensemble_size, *leading)

    def predict(self, frames: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """The reward, the ensemble mean: frames (..., H, W, 3) uint8 -> (...) float32 numpy."""
        return self.predict_members(frames, batch_size).mean(dim=0).numpy()

    def disagreement(self, frames: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Std over the members of each frame's reward, (...) float32 numpy (0 for a single member)."""
        return self.predict_members(frames, batch_size).std(dim=0, unbiased=False).numpy()


# ---------------------------------------------------------------- data


def pair_frames(
    pairs: PreferencePairs, trajectories: Sequence[Trajectory]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frames of pairs of one-step segments: segment (episode, start) is the frame `frames[start]` of that
    episode, the rendering of `observations[start]` (start in [0, T]: an episode of T steps has T + 1 frames; the
    frame-pair sampler of `embodied_rl.labelling` draws t in [1, T]). Returns frames_1, frames_2 (P, H, W, 3) uint8
    and a copy of the labels (P,) (NaN where a pair is unlabelled). A DatasetError for pairs of longer segments, an
    unknown episode, an episode without frames or a start past its last frame."""
    if pairs.segment_length != 1:
        raise DatasetError(
            f"image rewards compare single frames: pairs need segment_length 1, not {pairs.segment_length}"
        )
    table = {int(t.episode_id): t for t in trajectories}
    if len(table) != len(trajectories):
        raise DatasetError("episode ids must be unique to find the frames of the pairs")
    used = sorted(set(pairs.episode_1.tolist()) | set(pairs.episode_2.tolist()))
    missing = [e for e in used if e not in table]
    if missing:
        raise DatasetError(f"pairs refer to episodes not in the dataset: {missing[:10]}")
    without = [e for e in used if table[e].frames is None]
    if without:
        raise DatasetError(f"episodes without frames (render the dataset with frames): {without[:10]}")
    shapes = {np.shape(table[e].frames)[1:] for e in used}
    if len(shapes) > 1:
        raise DatasetError(f"the episodes' frames have different shapes: {sorted(shapes)}")
    frame_shape = shapes.pop() if shapes else (0, 0, 3)
    out = []
    for episodes, starts in ((pairs.episode_1, pairs.start_1), (pairs.episode_2, pairs.start_2)):
        frames = np.empty((len(pairs), *frame_shape), np.uint8)
        for episode in np.unique(episodes):  # one gather per episode
            rows = np.flatnonzero(episodes == episode)
            trajectory = table[int(episode)]
            bad = starts[rows][starts[rows] >= len(trajectory.frames)]  # frames: T + 1, the last state's included
            if len(bad):
                raise DatasetError(f"episode {episode} has {len(trajectory.frames)} frames, no frame {bad[0]}")
            frames[rows] = np.asarray(trajectory.frames)[starts[rows]]
        out.append(frames)
    return out[0], out[1], pairs.label.copy()


def _check_pairs(frames_1: Any, frames_2: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host tensors (P, H, W, 3) uint8, (P, H, W, 3) uint8, (P,) float32 (no copy of numpy frames), checked."""
    frames_1, frames_2 = torch.as_tensor(frames_1), torch.as_tensor(frames_2)
    labels = torch.as_tensor(np.asarray(labels, dtype=np.float32) if not torch.is_tensor(labels) else labels).float()
    shapes = f"frames_1 {tuple(frames_1.shape)}, frames_2 {tuple(frames_2.shape)}, labels {tuple(labels.shape)}"
    if frames_1.dtype != torch.uint8 or frames_2.dtype != torch.uint8:
        raise DatasetError(f"frames must be uint8 images (0-255), got {frames_1.dtype} and {frames_2.dtype}")
    if (
        frames_1.ndim != 4
        or frames_1.shape[-1] != 3
        or frames_1.shape != frames_2.shape
        or labels.shape != frames_1.shape[:1]
    ):
        raise DatasetError(f"frame pairs need frames_1, frames_2 (P, H, W, 3) and labels (P,); got {shapes}")
    if len(labels) == 0:
        raise DatasetError("no frame pairs to train the image reward model on")
    if torch.isnan(labels).any():
        raise DatasetError(f"{int(torch.isnan(labels).sum())} pair(s) are unlabelled (NaN); train on labelled pairs")
    if not torch.isfinite(labels).all() or (labels < 0).any() or (labels > 1).any():
        raise DatasetError("preference labels must be probabilities in [0, 1] (P[frame 1 preferred])")
    return frames_1.cpu(), frames_2.cpu(), labels.cpu()


@torch.no_grad()
def _evaluate(
    model: ImageRewardEnsemble,
    frames_1: torch.Tensor,
    frames_2: torch.Tensor,
    labels: torch.Tensor,
    rows: torch.Tensor,
    batch_size: int = 256,
) -> dict[str, float]:
    """Metrics over the pairs `rows` of host tensors, `batch_size` pairs at a time on the model's device."""
    device = model.device
    loss, disagreement = torch.zeros((), device=device), torch.zeros((), device=device)
    correct, decided = torch.zeros((), device=device), torch.zeros((), device=device)
    for part in rows.split(batch_size):
        both = torch.cat([frames_1[part], frames_2[part]]).to(device)  # (2b, H, W, 3)
        label = labels[part].to(device)  # (b,)
        reward = model(both)  # (E, 2b)
        score_1, score_2 = reward.chunk(2, dim=-1)  # (E, b) each
        loss += bradley_terry_loss(score_1, score_2, label).mean() * len(part)
        disagreement += reward.std(dim=0, unbiased=False).mean() * len(part)
        margin = score_1.mean(dim=0) - score_2.mean(dim=0)  # (b,) ensemble-mean reward difference
        clear = (label - 0.5).abs() > 1e-6  # ties carry no right answer
        correct += ((margin > 0) == (label > 0.5))[clear].sum()
        decided += clear.sum()
    metrics = {"loss": float(loss) / len(rows)}
    if model.ensemble_size > 1:
        metrics["disagreement"] = float(disagreement) / len(rows)
    metrics["accuracy"] = float(correct / decided) if decided > 0 else math.nan
    metrics["error"] = 1.0 - metrics["accuracy"]
    return metrics


def evaluate_image_reward_model(
    model: ImageRewardEnsemble, frames_1: Any, frames_2: Any, labels: Any, batch_size: int = 256
) -> dict[str, float]:
    """Metrics on labelled frame pairs: `loss` (Bradley-Terry cross-entropy, mean over the members), `accuracy`
    (the ensemble-mean reward ranks the pair as its label does; ties 0.5 left out), `error` (1 - accuracy) and
    `disagreement` (E > 1: mean std over the members of the frames' rewards)."""
    frames_1, frames_2, labels = _check_pairs(frames_1, frames_2, labels)
    was_training = model.training
    model.eval()
    metrics = _evaluate(model, frames_1, frames_2, labels, torch.arange(len(labels)), batch_size)
    model.train(was_training)
    return metrics


# ---------------------------------------------------------------- training


def train_image_reward_model(
    frames_1: np.ndarray | torch.Tensor,
    frames_2: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    settings: ImageRewardConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
    logger: Any = None,
) -> tuple[ImageRewardEnsemble, RewardTrainReport]:
    """Fit an image reward ensemble on P labelled pairs of frames with the shared fit loop.

    frames_1, frames_2 (P, H, W, 3) uint8, kept on the host; labels (P,) = P[frame 1 preferred] (1: frame 1,
    0: frame 2, 0.5: a tie, soft values allowed), as `PreferencePairs.label` (`pair_frames` builds all three from
    pairs with segment_length 1). A `settings.val_fraction` of the pairs is held out; every `settings.eval_every`
    updates the validation loss, accuracy and ensemble disagreement are measured, and the weights with the best
    `settings.select_metric` are restored at the end. Each member trains on its own minibatches, each gathered on
    the host and moved to `settings.device`; `settings.augment` shifts every training frame at random (DrQ).
    Deterministic for a seed on CPU; the global RNG is left as it was. `progress`: a tqdm bar. `logger`: an object
    with `log(metrics, step, prefix)`, given `reward/train_loss` and `reward/val_*` on the fit's own step axis.
    Returns the model (eval mode) and the report (`RewardTrainReport`, kind "image").
    """
    cfg = settings if isinstance(settings, ImageRewardConfig) else ImageRewardConfig.from_mapping(settings)
    device = resolve_device(cfg.device, "reward.device")
    frames_1, frames_2, labels = _check_pairs(frames_1, frames_2, labels)
    train_idx, val_idx = split_validation(list(range(len(labels))), cfg.val_fraction, seed)
    train_rows, val_rows = torch.as_tensor(train_idx), torch.as_tensor(val_idx, dtype=torch.long)

    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # init and augmentation from `seed`; global RNG untouched
        torch.manual_seed(seed)
        model = ImageRewardEnsemble.from_config(frames_1.shape[1:], cfg).to(device)
        model.train()

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:  # idx (E, B) positions among the training pairs
            rows = train_rows[idx.cpu()]  # (E, B) pair numbers
            both = torch.cat([frames_1[rows], frames_2[rows]], dim=1).to(device)  # (E, 2B, H, W, 3) uint8
            if cfg.augment:
                both = random_shift(both.flatten(0, 1), cfg.shift_pad).reshape(both.shape)
            score_1, score_2 = model(both, per_member=True).chunk(2, dim=-1)  # (E, B) each
            return bradley_terry_loss(score_1, score_2, labels[rows].to(device))  # (E,)

        fit_settings = FitSettings(
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            eval_every=cfg.eval_every,
            select_metric=cfg.select_metric,
            patience=cfg.patience,
            progress=progress,
        )
        validate = None
        if len(val_rows):
            validate = lambda: _evaluate(model, frames_1, frames_2, labels, val_rows)  # noqa: E731
        fit_report = fit(
            model,
            batch_loss,
            len(train_rows),
            fit_settings,
            validate=validate,
            ensemble_size=cfg.ensemble_size,
            seed=seed,
            logger=logger,
            log_prefix="reward",
            loss_name="loss",
            desc="reward model (image)",
        )
    curves, best = fit_report.val_metrics, fit_report.best_metrics
    report = RewardTrainReport(
        kind="image",
        eval_steps=fit_report.eval_steps,
        train_loss=fit_report.train_loss,
        val_loss=curves.get("loss", []),
        val_accuracy=curves.get("accuracy", []),
        val_disagreement=curves.get("disagreement", []),
        best_step=fit_report.best_step,
        best_val_loss=best.get("loss", math.nan),
        best_val_accuracy=best.get("accuracy", math.nan),
        select_metric=cfg.select_metric,
        stopped_early=fit_report.stopped_early,
        num_train_pairs=len(train_rows),
        num_val_pairs=len(val_rows),
        val_pairs=list(val_idx),
    )
    model.eval()
    return model, report


# ---------------------------------------------------------------- relabelling


def relabel_with_image_reward(
    model: ImageRewardEnsemble, trajectories: Sequence[Trajectory], batch_size: int = 256
) -> list[Trajectory]:
    """New trajectories whose reward of transition t is the ensemble-mean reward of the frame it leads to,
    r(frames[t + 1]) (float32, computed without gradients in batches of `batch_size` frames); everything else
    is as it was, and `infos["env_reward"]` keeps the dataset's rewards (those already there, when relabelling a
    relabelled set). A DatasetError if an episode has no frames."""
    without = [t.episode_id for t in trajectories if t.frames is None]
    if without:
        raise DatasetError(f"image rewards need the episodes' frames; episodes without frames: {without[:10]}")
    relabelled = []
    for trajectory in trajectories:
        reward = model.predict(np.asarray(trajectory.frames)[1:], batch_size)  # (T,) r(frames[t + 1])
        infos = {"env_reward": trajectory.rewards, **trajectory.infos}  # an earlier env_reward wins
        relabelled.append(replace(trajectory, rewards=reward.astype(np.float32), infos=infos))
    return relabelled


# ---------------------------------------------------------------- save / load

_FORMAT = "embodied_rl.image_reward_model"


def save_image_reward_model(model: ImageRewardEnsemble, path: str | Path) -> None:
    """The model's constructor arguments (architecture and image shape) and weights in one file (torch.save),
    written whole or not at all."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path, "wb") as f:
        torch.save({"format": _FORMAT, "init_args": model.init_args, "state_dict": state}, f)


def load_image_reward_model(path: str | Path, device: str | torch.device = "cpu") -> ImageRewardEnsemble:
    """A model saved by `save_image_reward_model`, in eval mode on `device`."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file at all (or pickled objects beyond tensors and containers)
        raise ValueError(f"{path} is not an image reward model saved by save_image_reward_model: {error}") from error
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an image reward model saved by save_image_reward_model")
    model = ImageRewardEnsemble(**saved["init_args"])
    model.load_state_dict(saved["state_dict"])
    return model.to(resolve_device(device)).eval()


__all__ = [
    "ImageRewardConfig",
    "ImageRewardEnsemble",
    "evaluate_image_reward_model",
    "load_image_reward_model",
    "pair_frames",
    "relabel_with_image_reward",
    "save_image_reward_model",
    "train_image_reward_model",
]

"""The one trajectory schema (docs/data.md); transitions, segments and sequences are views of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied_rl.data.errors import DatasetError

Observations = np.ndarray | dict[str, np.ndarray]


def observation_length(observations: Observations) -> int:
    """Number of time steps in an array or dict of arrays."""
    if isinstance(observations, dict):
        lengths = {len(v) for v in observations.values()}
        if len(lengths) != 1:
            raise DatasetError(f"observation keys have different lengths: {sorted(lengths)}")
        return lengths.pop()
    return len(observations)


@dataclass
class Trajectory:
    """One episode, as numpy arrays.

    `frames[t]` is the rendered image of the state in `observations[t]` (reset frame first), and
    `success[t]` / `infos[k][t]` are the env's info after `actions[t]`. Only the last step may be terminal
    or truncated; observations and rewards must be finite (actions may be NaN: hidden actions).
    """

    observations: Observations  # (T+1, *obs_shape), or a dict of such arrays
    actions: np.ndarray  # (T, A)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    success: np.ndarray  # (T,) bool
    frames: np.ndarray | None = None  # (T+1, H, W, 3) uint8
    infos: dict[str, np.ndarray] = field(default_factory=dict)  # other per-step infos, (T, ...)
    episode_id: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rewards = np.asarray(self.rewards)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        self.success = np.asarray(self.success, dtype=bool)
        if np.ndim(self.actions) != 2:
            raise DatasetError(
                f"episode {self.episode_id} has actions of shape {np.shape(self.actions)} (expected (T, A))"
            )
        steps = len(self.actions)
        problems = []
        if observation_length(self.observations) != steps + 1:
            problems.append(f"{observation_length(self.observations)} observations (expected T+1 = {steps + 1})")
        for name in ("rewards", "terminations", "truncations", "success"):
            if len(getattr(self, name)) != steps:
                problems.append(f"{len(getattr(self, name))} {name} (expected T = {steps})")
        if self.frames is not None and len(self.frames) != steps + 1:
            problems.append(f"{len(self.frames)} frames (expected T+1 = {steps + 1})")
        for key, value in self.infos.items():
            if len(value) != steps:
                problems.append(f"{len(value)} entries in infos[{key!r}] (expected T = {steps})")
        if problems:
            raise DatasetError(f"episode {self.episode_id} has {steps} actions but " + ", ".join(problems))
        for name in ("terminations", "truncations"):
            early = np.flatnonzero(getattr(self, name)[:-1])
            if len(early):
                problems.append(f"{name} before its last step (at steps {early[:5].tolist()} of {steps})")
        if isinstance(self.observations, dict):
            observations = {f"observations[{key!r}]": value for key, value in self.observations.items()}
        else:
            observations = {"observations": self.observations}
        for name, values in observations.items():
            values = np.asarray(values)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():  # integer pixels are always finite
                problems.append(f"non-finite {name}")
        if not np.isfinite(self.rewards).all():
            problems.append("non-finite rewards")
        if problems:
            raise DatasetError(f"episode {self.episode_id} has " + ", ".join(problems))

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))

    @property
    def succeeded(self) -> bool:
        """True if the env reported success at any step."""
        return bool(self.success.any())

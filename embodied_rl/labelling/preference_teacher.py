"""Scripted preference teacher with the noise models of B-Pref: Lee, Smith & Abbeel, "B-Pref: Benchmarking
Preference-Based Reinforcement Learning", NeurIPS 2021 Datasets and Benchmarks track.

The teacher compares two segments of H steps by the dataset's (ground-truth) rewards. With R_i = sum_t r_t^i the
return of segment i, in this order (B-Pref's `get_label`):

1. skip: a pair is dropped when both returns are below the skip threshold, max(R_1, R_2) < skip (neither
   segment shows the task being done);
2. myopic discount: the teacher weighs step t (t = 0..H-1) by gamma^(H-1-t), recent steps most:
   Rg_i = sum_t gamma^(H-1-t) r_t^i;
3. choice: with beta = None (or inf) the perfectly rational one: label 1 if Rg_1 > Rg_2, 0 if Rg_1 < Rg_2 and 0.5
   when they are exactly equal; otherwise Bradley-Terry, P(segment 1 preferred) = sigmoid(beta (Rg_1 - Rg_2)),
   from which the label is drawn (0 or 1, B-Pref), or which is the label itself with `soft=True` (ours);
4. mistake: with probability `mistake` the label is flipped, y -> 1 - y;
5. equal: a pair whose returns are within the equal threshold, |R_1 - R_2| < equal, is a tie, 0.5 (whatever
   steps 3-4 gave).

Labels are P(segment 1 preferred) (`embodied_rl.data.preferences`); B-Pref writes 1 for segment 2 and -1 for a tie.
Deviation from B-Pref's code: an exact tie of the rational teacher is 0.5 (B-Pref's `1*(R_1 < R_2)` prefers
segment 1 then, a bias towards the first segment that sparse rewards make common).

**Thresholds.** With `thresholds="relative"` (default, B-Pref's) `equal` and `skip` are fractions of the mean
return of a segment of H steps in the dataset, scale = H * mean_t |r_t| over every transition of the trajectories
given to `label` (B-Pref: the mean episode return times H / episode length, i.e. H * mean r; the absolute value
keeps the scale positive for rewards of either sign, and equals B-Pref's when rewards are >= 0, as in Meta-World).
B-Pref's settings are then equal = 0.1 ("Equal"), skip = 0.1 ("Skip"). With `thresholds="absolute"` they are in
reward units, compared with the segment returns directly.

B-Pref's teachers: Oracle (all defaults), Stoc (beta=1), Mistake (mistake=0.1), Skip (skip=0.1), Equal
(equal=0.1), Myopic (gamma=0.9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embodied_rl.data.preferences import PreferencePairs, pair_segment_arrays
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

THRESHOLD_KINDS = ("relative", "absolute")


@dataclass
class ScriptedTeacher:
    """Preference labels from the dataset's rewards with B-Pref's noise models (module docstring)."""

    equal: float = 0.0  # tie (0.5) when |R_1 - R_2| < equal (x scale when relative); 0: off
    skip: float | None = None  # drop a pair when max(R_1, R_2) < skip (x scale when relative); None: off
    mistake: float = 0.0  # probability of flipping a label
    gamma: float = 1.0  # myopic discount: step t of H weighs gamma^(H-1-t)
    beta: float | None = None  # Bradley-Terry temperature; None or inf: the rational (deterministic) teacher
    soft: bool = False  # with beta: the label is P(segment 1 preferred) itself instead of a draw from it
    thresholds: str = "relative"  # relative: fractions of H * mean |r| (B-Pref) | absolute: reward units

    def __post_init__(self) -> None:
        check_field_types(self, "teacher settings", prefix="teacher.")
        ranges = {"equal": ">= 0", "mistake": "[0, 1]", "gamma": "(0, 1]", "beta": "None or > 0"}
        check_ranges("teacher settings", vars(self), ranges, prefix="teacher.")
        if self.skip is not None and not math.isfinite(self.skip):
            raise ValueError(f"invalid teacher settings: teacher.skip={self.skip} (must be a finite number or None)")
        if self.thresholds not in THRESHOLD_KINDS:
            raise ValueError(f"teacher.thresholds must be one of {', '.join(THRESHOLD_KINDS)}, got {self.thresholds!r}")
        if self.beta is not None and math.isinf(self.beta):
            self.beta = None  # beta -> inf is the rational teacher

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ScriptedTeacher:
        """From a dict or OmegaConf node; an unknown key is an error naming the known ones."""
        return settings_from_mapping(cls, values, "teacher")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def threshold_values(self, trajectories: Sequence[Trajectory], segment_length: int) -> tuple[float, float | None]:
        """(equal, skip) in reward units: as set when absolute, times H * mean |r| of the dataset when relative."""
        scale = 1.0
        if self.thresholds == "relative":
            rewards = np.concatenate([np.abs(np.asarray(t.rewards, np.float64)) for t in trajectories] or [[0.0]])
            scale = segment_length * float(rewards.mean())
        return self.equal * scale, None if self.skip is None else self.skip * scale

    def label(self, pairs: PreferencePairs, trajectories: Sequence[Trajectory], seed: int = 0) -> PreferencePairs:
        """The pairs labelled (source "scripted"), skipped pairs removed. Deterministic for a seed; each pair's
        random draws do not depend on which other pairs are skipped."""
        H = pairs.segment_length
        first, second = pair_segment_arrays(pairs, trajectories, keys=("reward",))
        r1 = first["reward"].astype(np.float64)  # (P, H)
        r2 = second["reward"].astype(np.float64)
        rng = np.random.default_rng(seed)
        choice_draw = rng.random(len(pairs))  # (P,) uniforms of the Bradley-Terry draw
        mistake_draw = rng.random(len(pairs))  # (P,) uniforms of the flips

        returns_1, returns_2 = r1.sum(axis=1), r2.sum(axis=1)  # (P,)
        equal, skip = self.threshold_values(trajectories, H)
        keep = np.ones(len(pairs), dtype=bool)
        if skip is not None:
            keep = np.maximum(returns_1, returns_2) >= skip

        weights = self.gamma ** np.arange(H - 1, -1, -1, dtype=np.float64)  # (H,) gamma^(H-1-t)
        myopic_1, myopic_2 = r1 @ weights, r2 @ weights  # (P,)
        if self.beta is None:
            label = np.where(myopic_1 > myopic_2, 1.0, np.where(myopic_1 < myopic_2, 0.0, 0.5))
        else:
            prob = 0.5 * (1.0 + np.tanh(0.5 * self.beta * (myopic_1 - myopic_2)))  # sigmoid, without overflow
            label = prob if self.soft else (choice_draw < prob).astype(np.float64)
        flip = mistake_draw < self.mistake
        label = np.where(flip, 1.0 - label, label)
        label = np.where(np.abs(returns_1 - returns_2) < equal, 0.5, label)

        kept = pairs.select(keep)
        return PreferencePairs(
            H, kept.episode_1, kept.start_1, kept.episode_2, kept.start_2, label[keep], source="scripted"
        )

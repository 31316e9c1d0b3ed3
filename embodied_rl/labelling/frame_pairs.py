"""Pairs of single rendered frames of an offline dataset, the queries of VLM preference labelling (RL-VLM-F, Wang et
al., ICML 2024; "Real-World Offline RL from VLM Feedback", Venkataraman et al. 2024).

A frame pair is stored as `PreferencePairs` with `segment_length` 1, so the pair files and tools of
`embodied_rl.data.preferences` are reused: `start_i` is a frame index t, the frame of `observations[t]`
(`Trajectory.frames[t]`). Only t in [1, T] is drawn, T = len(trajectory): frame t is the state reached by action
t-1, so it has a reward, `rewards[t - 1]` (Meta-World's reward is a function of the state reached), which the
scripted teacher compares. The reset frame (t = 0) has no reward and is never drawn.

Note: a frame pair is not a segment pair. `segment_arrays` would read step t (reward `rewards[t]`, and no step T);
use `frame_pair_images` and `frame_pair_rewards` here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.labelling.preference_teacher import ScriptedTeacher

MAX_REJECTIONS = 1000  # identical draws in a row before the dataset is declared to hold too few distinct frames


def check_frames(trajectories: Sequence[Trajectory], name: str = "the dataset") -> None:
    """A DatasetError unless every trajectory carries its rendered frames (T+1, H, W, 3) uint8."""
    if not trajectories:
        raise DatasetError(f"{name} holds no trajectories")
    missing = [t.episode_id for t in trajectories if t.frames is None]
    if missing:
        raise DatasetError(f"{name} has no rendered frames ({len(missing)} of {len(trajectories)} episodes lack them)")
    shape = np.shape(trajectories[0].frames)[1:]
    if len(shape) != 3 or shape[2] != 3:
        raise DatasetError(f"{name}: frames of shape {shape}, expected (H, W, 3) RGB images")


def sample_frame_pairs(
    trajectories: Sequence[Trajectory], num_pairs: int, seed: int = 0
) -> tuple[PreferencePairs, int]:
    """`num_pairs` unlabelled frame pairs (label NaN), each frame uniform over the frames t in [1, T] of every
    episode; a draw whose two frames are exactly equal arrays is skipped and drawn again. Returns the pairs and
    the number of identical draws skipped.

    Pairs are drawn one after another from one generator, so the first n pairs of a larger request are the n pairs
    of a smaller one with the same seed (a labelling run can be extended)."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    check_frames(trajectories)
    ids = np.array([t.episode_id for t in trajectories], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DatasetError("episode ids must be unique to refer to frames")
    counts = np.array([len(t) for t in trajectories], dtype=np.int64)  # frames 1..T of each episode
    offsets = np.concatenate([[0], np.cumsum(counts)])  # (E+1,) global number of each episode's frame 1
    total = int(offsets[-1])
    if total < 2:
        raise DatasetError(f"the dataset has {total} frame(s) after the reset frames; a pair needs two")

    def locate(number: int) -> tuple[int, int]:  # global frame number -> (index of episode, frame t >= 1)
        episode = int(np.searchsorted(offsets, number, side="right") - 1)
        return episode, int(number - offsets[episode] + 1)

    rng = np.random.default_rng(seed)
    rows, skipped, rejected_in_a_row = [], 0, 0
    while len(rows) < num_pairs:
        (i1, t1), (i2, t2) = (locate(int(n)) for n in rng.integers(total, size=2))
        if np.array_equal(trajectories[i1].frames[t1], trajectories[i2].frames[t2]):
            skipped += 1
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTIONS:
                raise DatasetError(
                    f"{MAX_REJECTIONS} frame pairs in a row were identical images: the dataset's frames hardly "
                    "change (a static scene, or a camera that does not see the robot?)"
                )
            continue
        rejected_in_a_row = 0
        rows.append((ids[i1], t1, ids[i2], t2))
    e1, s1, e2, s2 = (np.array(column, dtype=np.int64) for column in zip(*rows))
    label = np.full(num_pairs, np.nan, dtype=np.float32)
    return PreferencePairs(1, e1, s1, e2, s2, label, source="unlabelled"), skipped


def _frame_table(pairs: PreferencePairs, trajectories: Sequence[Trajectory]) -> dict[int, Trajectory]:
    if pairs.segment_length != 1:
        raise ValueError(f"frame pairs have segment_length 1, got {pairs.segment_length}")
    table = {int(t.episode_id): t for t in trajectories}
    for episodes, starts in ((pairs.episode_1, pairs.start_1), (pairs.episode_2, pairs.start_2)):
        for episode, t in zip(episodes.tolist(), starts.tolist()):
            if episode not in table:
                raise DatasetError(f"frame pairs refer to episode {episode}, not in the dataset")
            if not 1 <= t <= len(table[episode]):
                raise DatasetError(f"frame {t} of episode {episode} is outside [1, {len(table[episode])}]")
    return table


def frame_pair_images(pairs: PreferencePairs, trajectories: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray]:
    """The two frames of every pair: two (P, H, W, 3) uint8 arrays."""
    check_frames(trajectories)
    table = _frame_table(pairs, trajectories)
    first = np.stack([table[e].frames[t] for e, t in zip(pairs.episode_1.tolist(), pairs.start_1.tolist())])
    second = np.stack([table[e].frames[t] for e, t in zip(pairs.episode_2.tolist(), pairs.start_2.tolist())])
    return first.astype(np.uint8), second.astype(np.uint8)


def frame_pair_rewards(pairs: PreferencePairs, trajectories: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray]:
    """The reward of each pair's frames, `rewards[t - 1]` of frame t: two (P,) float64 arrays."""
    table = _frame_table(pairs, trajectories)

    def rewards(episodes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.array([table[e].rewards[t - 1] for e, t in zip(episodes.tolist(), starts.tolist())], np.float64)

    return rewards(pairs.episode_1, pairs.start_1), rewards(pairs.episode_2, pairs.start_2)


def scripted_frame_labels(
    pairs: PreferencePairs,
    trajectories: Sequence[Trajectory],
    teacher: ScriptedTeacher | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(P,) labels of the scripted teacher (B-Pref noise models; default the oracle: 1 when frame 1's reward is
    higher, 0 when lower, 0.5 when equal) on the frames' rewards, one per pair in order. The teacher compares the
    one-step segments that end in each frame (step t - 1, whose reward is the frame's); `skip` is refused here, as
    it would drop pairs and break the order."""
    teacher = teacher or ScriptedTeacher()
    if teacher.skip is not None:
        raise ValueError("the frame teacher keeps every pair in order: teacher.skip must be None (off)")
    _frame_table(pairs, trajectories)
    steps = PreferencePairs(1, pairs.episode_1, pairs.start_1 - 1, pairs.episode_2, pairs.start_2 - 1, pairs.label)
    return teacher.label(steps, trajectories, seed=seed).label.astype(np.float64)

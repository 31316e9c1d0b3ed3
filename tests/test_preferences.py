"""Preference data (embodied_rl.data.preferences) and the scripted B-Pref teacher (labelling.preference_teacher).

Synthetic episodes carry distinctive values: observation t of episode e is 1000 * e + t in every coordinate and
action t is (1000 * e + t, -(1000 * e + t)), so a segment that starts at the wrong step or in the wrong episode is
visible at once. Rewards are chosen per test.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from embodied_rl.data import (
    DatasetError,
    PreferencePairs,
    Trajectory,
    import_preference_labels,
    pair_segment_arrays,
    sample_segment_pairs,
    segment_arrays,
)
from embodied_rl.labelling import ScriptedTeacher

OBS_DIM = 3


def make_trajectory(episode: int, steps: int, rewards=None) -> Trajectory:
    values = 1000.0 * episode + np.arange(steps + 1)  # (T+1,)
    rewards = np.zeros(steps) if rewards is None else np.asarray(rewards, dtype=np.float64)
    false = np.zeros(steps, dtype=bool)
    return Trajectory(
        observations=np.repeat(values[:, None], OBS_DIM, axis=1).astype(np.float32),  # (T+1, OBS_DIM)
        actions=np.stack([values[:-1], -values[:-1]], axis=1).astype(np.float32),  # (T, 2)
        rewards=rewards,
        terminations=false,
        truncations=np.arange(steps) == steps - 1,
        success=false,
        episode_id=episode,
    )


def pairs_of(segment_length, *rows, label=None, source="test") -> PreferencePairs:
    """Pairs from rows (episode_1, start_1, episode_2, start_2)."""
    e1, s1, e2, s2 = np.array(rows, dtype=np.int64).T
    label = np.full(len(rows), np.nan) if label is None else label
    return PreferencePairs(segment_length, e1, s1, e2, s2, label, source=source)


# ---------------------------------------------------------------- PreferencePairs


def test_pairs_save_load_round_trip(tmp_path):
    pairs = pairs_of(4, (1, 0, 2, 3), (2, 5, 1, 1), (7, 2, 7, 0), label=[1.0, np.nan, 0.25], source="imported:x")
    path = tmp_path / "pairs.npz"
    pairs.save(path)
    loaded = PreferencePairs.load(path)
    assert loaded.segment_length == 4 and loaded.source == "imported:x" and len(loaded) == 3
    for name in ("episode_1", "start_1", "episode_2", "start_2"):
        assert loaded.__dict__[name].dtype == np.int64
        np.testing.assert_array_equal(loaded.__dict__[name], pairs.__dict__[name])
    assert loaded.label.dtype == np.float32
    np.testing.assert_array_equal(loaded.label, pairs.label)  # NaN where NaN
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.npz"]  # atomic: no .tmp left behind
    np.load(path, allow_pickle=False)  # a plain npz, no pickles inside


def test_pairs_select_and_checks(tmp_path):
    pairs = pairs_of(4, (1, 0, 2, 3), (2, 5, 1, 1), (7, 2, 7, 0), label=[1.0, 0.0, 0.5])
    chosen = pairs.select(np.array([True, False, True]))
    np.testing.assert_array_equal(chosen.episode_1, [1, 7])
    np.testing.assert_array_equal(chosen.label, [1.0, 0.5])
    np.testing.assert_array_equal(pairs.select(np.array([2, 0])).start_2, [0, 3])
    with pytest.raises(ValueError, match="different lengths"):
        PreferencePairs(4, [1, 2], [0, 0], [1], [0], [0.5])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        pairs_of(4, (1, 0, 2, 0), label=[1.5])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a preference pairs file"):
        PreferencePairs.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="missing"):
        PreferencePairs.load(tmp_path / "other.npz")


# ---------------------------------------------------------------- sampling and gathering


def test_sampled_segments_stay_inside_episodes_and_pairs_differ():
    lengths = {4: 12, 9: 5, 2: 30, 6: 7, 8: 6}  # episode id: steps; 9 is shorter than a segment, 8 just fits
    trajectories = [make_trajectory(e, n) for e, n in lengths.items()]
    pairs = sample_segment_pairs(trajectories, 3000, segment_length=6, seed=3)
    assert len(pairs) == 3000 and pairs.segment_length == 6 and np.isnan(pairs.label).all()
    for episodes, starts in ((pairs.episode_1, pairs.start_1), (pairs.episode_2, pairs.start_2)):
        ends = starts + 6
        assert (starts >= 0).all() and (ends <= np.array([lengths[e] for e in episodes])).all()
        assert 9 not in episodes
        assert set(episodes) == {2, 4, 6, 8}
    same = (pairs.episode_1 == pairs.episode_2) & (pairs.start_1 == pairs.start_2)
    assert not same.any()
    again = sample_segment_pairs(trajectories, 3000, segment_length=6, seed=3)
    np.testing.assert_array_equal(again.start_1, pairs.start_1)
    np.testing.assert_array_equal(again.episode_2, pairs.episode_2)
    other = sample_segment_pairs(trajectories, 3000, segment_length=6, seed=4)
    assert (other.start_1 != pairs.start_1).any()


def test_sampling_is_uniform_over_windows():
    # Windows of 3 steps: episode 0 (5 steps) has 3, episode 1 (7 steps) has 5: 8 windows in all.
    trajectories = [make_trajectory(0, 5), make_trajectory(1, 7)]
    num = 40_000
    pairs = sample_segment_pairs(trajectories, num, segment_length=3, seed=0)
    window = np.where(pairs.episode_1 == 0, pairs.start_1, 3 + pairs.start_1)  # (P,) window number 0..7
    counts = np.bincount(window, minlength=8)
    sigma = np.sqrt(num * (1 / 8) * (7 / 8))
    assert np.abs(counts - num / 8).max() < 5 * sigma, counts
    second = np.where(pairs.episode_2 == 0, pairs.start_2, 3 + pairs.start_2)
    counts_2 = np.bincount(second, minlength=8)
    assert np.abs(counts_2 - num / 8).max() < 5 * sigma, counts_2
    # Two windows only: every pair compares the two.
    pairs = sample_segment_pairs([make_trajectory(0, 4)], 50, segment_length=3, seed=1)
    assert set(zip(pairs.start_1, pairs.start_2)) == {(0, 1), (1, 0)}
    with pytest.raises(DatasetError, match="two different segments"):
        sample_segment_pairs([make_trajectory(0, 3), make_trajectory(1, 2)], 5, segment_length=3)
    with pytest.raises(DatasetError, match="unique"):
        sample_segment_pairs([make_trajectory(0, 9), make_trajectory(0, 9)], 5, segment_length=3)


def test_segment_arrays_gathers_the_right_steps():
    trajectories = [make_trajectory(3, 10, rewards=np.arange(10) / 10), make_trajectory(5, 8, rewards=-np.arange(8))]
    out = segment_arrays(trajectories, np.array([5, 3, 5]), np.array([0, 7, 5]), 3)
    assert out["obs"].shape == (3, 3, OBS_DIM) and out["action"].shape == (3, 3, 2) and out["reward"].shape == (3, 3)
    assert all(v.dtype == np.float32 for v in out.values())
    # Segment 1: episode 3, steps 7, 8, 9: the observations at which the actions were taken (not the next ones).
    np.testing.assert_array_equal(out["obs"][1, :, 0], [3007, 3008, 3009])
    np.testing.assert_array_equal(out["action"][1], [[3007, -3007], [3008, -3008], [3009, -3009]])
    np.testing.assert_allclose(out["reward"][1], [0.7, 0.8, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(out["obs"][0, :, 2], [5000, 5001, 5002])
    np.testing.assert_array_equal(out["reward"][2], [-5, -6, -7])
    for i, (episode, start) in enumerate([(5, 0), (3, 7), (5, 5)]):  # against the trajectory itself
        t = trajectories[0] if episode == 3 else trajectories[1]
        np.testing.assert_array_equal(out["obs"][i], t.observations[start : start + 3])
        np.testing.assert_array_equal(out["action"][i], t.actions[start : start + 3])
    first, second = pair_segment_arrays(pairs_of(3, (5, 1, 3, 2)), trajectories, keys=("reward",))
    assert set(first) == {"reward"}
    np.testing.assert_array_equal(second["reward"][0], np.float32([0.2, 0.3, 0.4]))
    with pytest.raises(DatasetError, match="do not fit"):
        segment_arrays(trajectories, np.array([5]), np.array([6]), 3)  # steps 6, 7, 8 of 8
    with pytest.raises(DatasetError, match="not in the dataset"):
        segment_arrays(trajectories, np.array([4]), np.array([0]), 3)


# ---------------------------------------------------------------- import of released labels

# Episodes in dataset order 3 (10 steps), 1 (6 steps), 5 (8 steps): transitions 0-9, 10-15, 16-23.
RELEASE_EPISODES = ((3, 10), (1, 6), (5, 8))
START_1 = np.array([0, 12, 17, 6], dtype=np.int32)  # episode 3 step 0, 1 step 2, 5 step 1, 3 step 6
START_2 = np.array([20, 3, 10, 16], dtype=np.int32)  # episode 5 step 4, 3 step 3, 1 step 0, 5 step 0
RELEASE_LABELS = [0, 1, -1, 1]  # first preferred, second preferred, equal, second


def release_dataset():
    return [make_trajectory(e, n) for e, n in RELEASE_EPISODES]


def write_release_folder(folder, start_1=START_1, start_2=START_2, labels=RELEASE_LABELS, q=""):
    folder.mkdir()
    for name, value in ((f"indices_num4{q}", start_1), (f"indices_2_num4{q}", start_2), ("label_human", labels)):
        (folder / name).write_bytes(pickle.dumps(value, protocol=2))  # as the release (Python 3.6 era)
    (folder / "label_dummy").write_bytes(pickle.dumps(np.ones((4, 2)), protocol=2))  # a placeholder, not read
    return folder


def check_release_pairs(pairs, source):
    assert pairs.segment_length == 4 and pairs.source == source
    np.testing.assert_array_equal(pairs.episode_1, [3, 1, 5, 3])
    np.testing.assert_array_equal(pairs.start_1, [0, 2, 1, 6])
    np.testing.assert_array_equal(pairs.episode_2, [5, 3, 1, 5])
    np.testing.assert_array_equal(pairs.start_2, [4, 3, 0, 0])
    np.testing.assert_array_equal(pairs.label, np.float32([1.0, 0.0, 0.5, 0.0]))


def test_import_release_folder(tmp_path):
    folder = write_release_folder(tmp_path / "drawer-open", q="_q4")
    pairs = import_preference_labels(folder, release_dataset(), segment_length=4)
    check_release_pairs(pairs, "imported:drawer-open")
    # The segments are the transitions the flat indices point at.
    flat_obs = np.concatenate([t.observations[:-1] for t in release_dataset()])  # (24, S) transitions' states
    gathered = segment_arrays(release_dataset(), pairs.episode_1, pairs.start_1, 4)["obs"]
    for i, index in enumerate(START_1):
        np.testing.assert_array_equal(gathered[i], flat_obs[index : index + 4])


@pytest.mark.parametrize("protocol", [2, 5])
def test_import_npz_and_pickled_dict(tmp_path, protocol):
    np.savez(tmp_path / "labels.npz", start_indices=START_1, start_indices_2=START_2, labels=RELEASE_LABELS)
    check_release_pairs(import_preference_labels(tmp_path / "labels.npz", release_dataset(), 4), "imported:labels.npz")
    one_hot = np.array([[1, 0], [0, 1], [0.5, 0.5], [0, 1]])  # (P, 2) rows [p_first, p_second]
    values = {"start_indices": START_1, "start_indices_2": list(START_2), "labels": one_hot}
    (tmp_path / "labels.pkl").write_bytes(pickle.dumps(values, protocol=protocol))
    check_release_pairs(import_preference_labels(tmp_path / "labels.pkl", release_dataset(), 4), "imported:labels.pkl")
    np.savez(tmp_path / "soft.npz", start_indices=START_1, start_indices_2=START_2, labels=[0.25, 1, -1, 0])
    soft = import_preference_labels(tmp_path / "soft.npz", release_dataset(), 4)
    np.testing.assert_array_equal(soft.label, np.float32([0.75, 0.0, 0.5, 1.0]))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"start_indices": np.array([0, 12, 24, 6])}, r"out of range.*pair 2: 24.*\[0, 24\)"),
        ({"start_indices_2": np.array([20, -1, 10, 16])}, r"out of range.*pair 1: -1"),
        ({"start_indices": np.array([0, 12, 7, 6])}, r"cross an episode's end.*pair 2: index 7 is step 7 of episode 3"),
        ({"start_indices_2": np.array([20, 3, 10, 13])}, r"cross an episode's end.*step 3 of episode 1 \(6 steps\)"),
        ({"labels": [0, 1, -1]}, r"different lengths"),
        ({"start_indices": np.array([0, 12, 17])}, r"different lengths"),
        ({"labels": [0, 2, -1, 1]}, r"outside \[0, 1\].*pair 1: 2"),
        ({"labels": [0, 1, np.nan, 1]}, r"outside \[0, 1\].*pair 2"),
        ({"labels": [[1, 0], [1.2, -0.2], [0, 1], [0, 1]]}, r"outside \[0, 1\].*pair 1"),
        ({"labels": np.ones((4, 2))}, r"not summing to 1"),
        ({"start_indices": np.array([0, 12.5, 17, 6])}, r"whole numbers"),
        ({"labels": None}, r"missing \['labels'\]"),
    ],
)
def test_import_refuses_files_that_do_not_match(tmp_path, change, message):
    values = {"start_indices": START_1, "start_indices_2": START_2, "labels": np.array(RELEASE_LABELS)}
    values.update(change)
    values = {k: v for k, v in values.items() if v is not None}
    np.savez(tmp_path / "labels.npz", **values)
    with pytest.raises(DatasetError, match=message):
        import_preference_labels(tmp_path / "labels.npz", release_dataset(), 4)


def test_import_refuses_bad_folders_and_pickles(tmp_path):
    folder = write_release_folder(tmp_path / "a", q="_q5")
    with pytest.raises(DatasetError, match="segments of 5 steps, not segment_length=4"):
        import_preference_labels(folder, release_dataset(), 4)
    folder = write_release_folder(tmp_path / "b")
    (folder / "label_human").unlink()
    with pytest.raises(DatasetError, match="expected one label_human"):
        import_preference_labels(folder, release_dataset(), 4)
    folder = write_release_folder(tmp_path / "c", start_1=np.array([0, 12, 17, 30]))
    with pytest.raises(DatasetError, match="out of range"):
        import_preference_labels(folder, release_dataset(), 4)
    marker = tmp_path / "ran"
    evil = {"start_indices": START_1, "start_indices_2": START_2, "labels": _Evil(marker)}
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(evil))
    with pytest.raises(DatasetError, match="refusing to load io.open"):
        import_preference_labels(tmp_path / "evil.pkl", release_dataset(), 4)
    assert not marker.exists()
    with pytest.raises(DatasetError, match="no preference label file"):
        import_preference_labels(tmp_path / "missing.npz", release_dataset(), 4)


# ---------------------------------------------------------------- scripted teacher


def random_reward_dataset(num_episodes=6, steps=40, seed=0):
    rng = np.random.default_rng(seed)
    return [make_trajectory(e, steps, rewards=rng.uniform(0, 1, steps)) for e in range(num_episodes)]


def true_returns(pairs, trajectories):
    first, second = pair_segment_arrays(pairs, trajectories, keys=("reward",))
    return first["reward"].astype(np.float64).sum(1), second["reward"].astype(np.float64).sum(1)


def test_noise_free_labels_follow_the_true_returns():
    trajectories = random_reward_dataset()
    pairs = sample_segment_pairs(trajectories, 500, segment_length=10, seed=0)
    labelled = ScriptedTeacher().label(pairs, trajectories, seed=0)
    r1, r2 = true_returns(pairs, trajectories)
    assert labelled.source == "scripted" and len(labelled) == 500 and labelled.label.dtype == np.float32
    np.testing.assert_array_equal(labelled.label, (r1 > r2).astype(np.float32))
    np.testing.assert_array_equal(labelled.start_2, pairs.start_2)
    assert np.isnan(pairs.label).all()  # the input is left as it was
    # An exact tie has no preferred segment: 0.5 (not segment 1, as B-Pref's code would give).
    flat = [make_trajectory(0, 6, rewards=np.ones(6))]
    tie = ScriptedTeacher().label(pairs_of(3, (0, 0, 0, 2)), flat)
    np.testing.assert_array_equal(tie.label, [0.5])


def test_equal_threshold_gives_ties():
    rewards = np.array([1.0, 1.0, 1.0, 1.25, 1.0, 1.0, 3.0, 1.0])  # (8,) exact in binary
    trajectories = [make_trajectory(0, 8, rewards)]
    # Segments of 2 steps: returns from start 0: 2.0, 1: 2.0, 2: 2.25, 3: 2.25, 5: 4.0, 6: 4.0.
    pairs = pairs_of(2, (0, 2, 0, 0), (0, 5, 0, 2), (0, 0, 0, 2), (0, 3, 0, 1))
    labels = ScriptedTeacher(equal=0.5, thresholds="absolute").label(pairs, trajectories).label
    np.testing.assert_array_equal(labels, [0.5, 1.0, 0.5, 0.5])  # |2.25 - 2| < 0.5, |4 - 2.25| >= 0.5
    labels = ScriptedTeacher(equal=0.1, thresholds="absolute").label(pairs, trajectories).label
    np.testing.assert_array_equal(labels, [1.0, 1.0, 0.0, 1.0])
    labels = ScriptedTeacher(equal=0.25, thresholds="absolute").label(pairs, trajectories).label
    np.testing.assert_array_equal(labels, [1.0, 1.0, 0.0, 1.0])  # |R_1 - R_2| < equal, strictly (B-Pref)
    # Relative: scale = H * mean |r| = 2 * 10.25 / 8 = 2.5625; equal=0.1 -> 0.25625 > 0.25.
    teacher = ScriptedTeacher(equal=0.1)
    assert teacher.threshold_values(trajectories, 2) == pytest.approx((0.25625, None))
    np.testing.assert_array_equal(teacher.label(pairs, trajectories).label, [0.5, 1.0, 0.5, 0.5])
    # Negative rewards: the scale is H * mean |r| (positive).
    negative = [make_trajectory(0, 2, [-1.0, -3.0])]
    assert ScriptedTeacher(equal=0.1, skip=-0.5).threshold_values(negative, 2) == pytest.approx((0.4, -2.0))
    # A tie stays a tie whatever the mistakes.
    flipped = ScriptedTeacher(equal=0.5, mistake=1.0, thresholds="absolute").label(pairs, trajectories).label
    np.testing.assert_array_equal(flipped, [0.5, 0.0, 0.5, 0.5])
    # Skip at its boundary: a pair is dropped only when both returns are below the threshold.
    both_low = pairs_of(2, (0, 0, 0, 1), (0, 2, 0, 0), (0, 0, 0, 5))  # max returns 2.0, 2.25, 4.0
    kept = ScriptedTeacher(skip=2.25, thresholds="absolute").label(both_low, trajectories)
    np.testing.assert_array_equal(kept.start_1, [2, 0])
    np.testing.assert_array_equal(kept.label, [1.0, 0.0])


def test_skip_removes_pairs_where_both_returns_are_low():
    trajectories = random_reward_dataset(seed=1)
    pairs = sample_segment_pairs(trajectories, 800, segment_length=5, seed=2)
    r1, r2 = true_returns(pairs, trajectories)
    threshold = 2.8
    teacher = ScriptedTeacher(skip=threshold, thresholds="absolute", mistake=0.3, beta=2.0)
    labelled = teacher.label(pairs, trajectories, seed=5)
    keep = np.maximum(r1, r2) >= threshold
    assert 50 < keep.sum() < 750  # the threshold cuts somewhere in the middle
    assert len(labelled) == keep.sum()
    np.testing.assert_array_equal(labelled.start_1, pairs.start_1[keep])
    np.testing.assert_array_equal(labelled.episode_2, pairs.episode_2[keep])
    # Each kept pair gets the label it would get without skipping (its random draws are its own).
    unskipped = ScriptedTeacher(thresholds="absolute", mistake=0.3, beta=2.0).label(pairs, trajectories, seed=5)
    np.testing.assert_array_equal(labelled.label, unskipped.label[keep])
    # Relative: skip=0.5 of H * mean |r|.
    _, skip = ScriptedTeacher(skip=0.5).threshold_values(trajectories, 5)
    mean_reward = np.mean(np.concatenate([t.rewards for t in trajectories]))
    assert skip == pytest.approx(0.5 * 5 * mean_reward)
    assert len(ScriptedTeacher(skip=0.5).label(pairs, trajectories)) == (np.maximum(r1, r2) >= skip).sum()


def test_mistakes_flip_about_the_right_fraction():
    trajectories = random_reward_dataset(num_episodes=10, steps=60)
    pairs = sample_segment_pairs(trajectories, 20_000, segment_length=10, seed=0)
    clean = ScriptedTeacher().label(pairs, trajectories).label
    noisy = ScriptedTeacher(mistake=0.2).label(pairs, trajectories, seed=7).label
    flipped = np.mean(noisy != clean)
    assert abs(flipped - 0.2) < 5 * np.sqrt(0.2 * 0.8 / 20_000), flipped
    np.testing.assert_array_equal(noisy[noisy != clean], 1 - clean[noisy != clean])
    again = ScriptedTeacher(mistake=0.2).label(pairs, trajectories, seed=7).label
    np.testing.assert_array_equal(again, noisy)  # deterministic for a seed
    assert (ScriptedTeacher(mistake=0.2).label(pairs, trajectories, seed=8).label != noisy).any()
    np.testing.assert_array_equal(ScriptedTeacher(mistake=1.0).label(pairs, trajectories).label, 1 - clean)


def test_myopic_discount_decides_by_late_rewards():
    # Segment A rewards its first step, segment B (a little less) its last step.
    early = make_trajectory(0, 4, rewards=[1.0, 0.0, 0.0, 0.0])
    late = make_trajectory(1, 4, rewards=[0.0, 0.0, 0.0, 0.9])
    pairs = pairs_of(4, (0, 0, 1, 0), (1, 0, 0, 0))
    np.testing.assert_array_equal(ScriptedTeacher().label(pairs, [early, late]).label, [1.0, 0.0])
    # gamma = 0.9: A weighs 0.9^3 = 0.729 < B's 0.9 (the last step weighs 1).
    np.testing.assert_array_equal(ScriptedTeacher(gamma=0.9).label(pairs, [early, late]).label, [0.0, 1.0])
    # gamma = 0.95: 0.857 < 0.9 still; gamma = 0.97: 0.913 > 0.9, the early reward wins again.
    np.testing.assert_array_equal(ScriptedTeacher(gamma=0.95).label(pairs, [early, late]).label, [0.0, 1.0])
    np.testing.assert_array_equal(ScriptedTeacher(gamma=0.97).label(pairs, [early, late]).label, [1.0, 0.0])
    # The equal threshold compares undiscounted returns (B-Pref): |1 - 0.9| < 0.15 although |0.729 - 0.9| is not.
    teacher = ScriptedTeacher(gamma=0.9, equal=0.15, thresholds="absolute")
    np.testing.assert_array_equal(teacher.label(pairs, [early, late]).label, [0.5, 0.5])


def test_bradley_terry_labels_have_the_sigmoid_probability():
    a = make_trajectory(0, 3, rewards=[0.5, 0.5, 0.5])  # return 1.5
    b = make_trajectory(1, 3, rewards=[0.2, 0.2, 0.2])  # return 0.6
    num = 20_000
    pairs = PreferencePairs(3, np.zeros(num), np.zeros(num), np.ones(num), np.zeros(num), np.full(num, np.nan))
    beta = 1.5
    p = 1.0 / (1.0 + np.exp(-beta * (1.5 - 0.6)))  # 0.794
    labels = ScriptedTeacher(beta=beta).label(pairs, [a, b], seed=0).label
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert abs(labels.mean() - p) < 5 * np.sqrt(p * (1 - p) / num), labels.mean()
    soft = ScriptedTeacher(beta=beta, soft=True).label(pairs, [a, b]).label
    np.testing.assert_allclose(soft, p, rtol=1e-6)
    swapped = pairs_of(3, (1, 0, 0, 0))  # b first
    np.testing.assert_allclose(ScriptedTeacher(beta=beta, soft=True).label(swapped, [a, b]).label, 1 - p, rtol=1e-6)
    # Labels with mistakes: P(label 1) = p (1 - eps) + (1 - p) eps.
    labels = ScriptedTeacher(beta=beta, mistake=0.1).label(pairs, [a, b], seed=1).label
    q = p * 0.9 + (1 - p) * 0.1
    assert abs(labels.mean() - q) < 5 * np.sqrt(q * (1 - q) / num)
    # beta -> inf is the rational teacher.
    assert ScriptedTeacher(beta=float("inf")).beta is None
    np.testing.assert_array_equal(ScriptedTeacher(beta=float("inf")).label(pairs, [a, b]).label, 1.0)


def test_teacher_settings_are_checked():
    teacher = ScriptedTeacher.from_mapping({"equal": 0.1, "mistake": 0.2, "gamma": 0.9, "beta": 1, "skip": 0.1})
    assert teacher.as_dict()["beta"] == 1 and teacher.thresholds == "relative"
    with pytest.raises(ValueError, match=r"unknown teacher config keys \['eps'\]"):
        ScriptedTeacher.from_mapping({"eps": 0.1})
    with pytest.raises(ValueError) as error:
        ScriptedTeacher(equal=-0.1, mistake=1.5, gamma=0.0, beta=-1.0)
    for text in ("teacher.equal=-0.1", "teacher.mistake=1.5", "teacher.gamma=0.0", "teacher.beta=-1.0"):
        assert text in str(error.value)
    with pytest.raises(ValueError, match="teacher.soft='yes'"):
        ScriptedTeacher(soft="yes")
    with pytest.raises(ValueError, match="teacher.thresholds must be one of relative, absolute"):
        ScriptedTeacher(thresholds="fraction")
    with pytest.raises(ValueError, match="teacher.skip=nan"):
        ScriptedTeacher(skip=float("nan"))

"""embodied_rl.data: Minari round trips, transitions, segments, sequences, replay, normalisation, errors.

Synthetic episodes carry distinctive values (observation, action and reward of step t of episode e all
equal 1000 * e + t), so a window that crosses an episode boundary or skips a step is visible at once.
Every test points MINARI_DATASETS_PATH at a tmp folder: the user's ~/.minari is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from embodied_rl.data import (
    DatasetError,
    NoisyPolicy,
    ObservationNormalizer,
    RandomPolicy,
    ReplayBuffer,
    SegmentSampler,
    SequenceReplay,
    Trajectory,
    check_dataset_matches_env,
    collect_dataset,
    dataset_id_for,
    load_trajectories,
    minari_io,
    open_dataset,
    transitions_from_trajectories,
    write_dataset,
)
from embodied_rl.data.collection import dataset_name_for
from embodied_rl.pipelines.offline_datasets import make_behaviour_policy

REPO = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 3, 2


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def make_trajectory(episode: int, steps: int, frames: bool = False, terminal: bool = False) -> Trajectory:
    values = 1000.0 * episode + np.arange(steps + 1)  # (T+1,)
    return Trajectory(
        observations=np.repeat(values[:, None], OBS_DIM, axis=1).astype(np.float32),  # (T+1, OBS_DIM)
        actions=np.repeat(values[:-1, None], ACT_DIM, axis=1).astype(np.float32),  # (T, ACT_DIM)
        rewards=values[:-1].copy(),
        terminations=np.arange(steps) == steps - 1 if terminal else np.zeros(steps, dtype=bool),
        truncations=np.arange(steps) == steps - 1 if not terminal else np.zeros(steps, dtype=bool),
        success=np.arange(steps) >= steps - 2,
        frames=np.repeat(values.astype(np.uint8)[:, None, None, None], 8, axis=1).repeat(8, 2).repeat(3, 3)
        if frames
        else None,
        infos={"grasp": np.linspace(0, 1, steps)},
        episode_id=episode,
        seed=100 + episode,
    )


def spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    return obs_space, gym.spaces.Box(-1e6, 1e6, (ACT_DIM,), np.float32)


# ---------------------------------------------------------------- Minari round trip (synthetic)


def test_write_then_load_round_trip_keeps_every_field():
    trajectories = [make_trajectory(e, steps, frames=True, terminal=e == 1) for e, steps in enumerate([5, 7])]
    obs_space, act_space = spaces()
    dataset_id = dataset_id_for("synthetic/counting", "unit")
    write_dataset(trajectories, dataset_id, observation_space=obs_space, action_space=act_space)

    assert minari.load_dataset(dataset_id).total_episodes == 2  # plain Minari opens it
    loaded = load_trajectories(dataset_id)
    for original, back in zip(trajectories, loaded):
        np.testing.assert_array_equal(back.observations, original.observations)
        np.testing.assert_array_equal(back.actions, original.actions)
        np.testing.assert_array_equal(back.rewards, original.rewards)
        np.testing.assert_array_equal(back.terminations, original.terminations)
        np.testing.assert_array_equal(back.truncations, original.truncations)
        np.testing.assert_array_equal(back.success, original.success)
        np.testing.assert_array_equal(back.frames, original.frames)
        np.testing.assert_allclose(back.infos["grasp"], original.infos["grasp"])
        assert (back.episode_id, back.seed) == (original.episode_id, original.seed)


def test_dict_observations_round_trip_and_obs_key():
    trajectory = make_trajectory(0, 4)
    pixels = np.zeros((5, 8, 8, 3), np.uint8)
    trajectory.observations = {"state": trajectory.observations, "pixels": pixels}
    pixels_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    obs_space = gym.spaces.Dict({"state": spaces()[0], "pixels": pixels_space})
    write_dataset([trajectory], "embodied_rl/dict/a-v0", observation_space=obs_space, action_space=spaces()[1])
    (both,) = load_trajectories("embodied_rl/dict/a-v0")
    assert both.observations["pixels"].shape == (5, 8, 8, 3) and both.observations["state"].shape == (
        5,
        OBS_DIM,
    )
    (state_only,) = load_trajectories("embodied_rl/dict/a-v0", obs_key="state")
    assert transitions_from_trajectories([state_only]).obs.shape == (4, OBS_DIM)
    env = gym.Env()  # the env's Dict space: with obs_key only its "state" entry is compared
    env.observation_space, env.action_space = obs_space, spaces()[1]
    assert len(load_trajectories("embodied_rl/dict/a-v0", env=env, obs_key="state")) == 1
    env.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (OBS_DIM + 1,)), "pixels": pixels_space})
    with pytest.raises(DatasetError, match=r"observation shape \(3,\) in the dataset vs \(4,\) in the env"):
        load_trajectories("embodied_rl/dict/a-v0", env=env, obs_key="state")
    with pytest.raises(DatasetError, match="obs_key"):
        transitions_from_trajectories([both])


def test_dataset_ids_follow_minari_rules():
    assert dataset_id_for("metaworld/drawer-open-v3", "expert") == "embodied_rl/metaworld-drawer-open-v3/expert-v0"
    assert dataset_id_for("drawer-open-v3", "expert") == "embodied_rl/metaworld-drawer-open-v3/expert-v0"  # bare
    assert dataset_id_for("Hopper-v5", "random") == "embodied_rl/mujoco-Hopper-v5/random-v0"
    assert dataset_name_for("scripted", 0.3, 0.1) == "scripted-noise30-eps10"
    assert dataset_name_for("scripted", 0.0, 0.0, frames=True) == "expert-frames"
    assert dataset_name_for("random", obs_mode="state+pixels") == "random-state-pixels"
    with pytest.raises(DatasetError, match="malformed"):
        dataset_id_for("metaworld/drawer-open-v3", "noise0.3")


# ---------------------------------------------------------------- clear errors


def test_unknown_id_is_one_clear_error():
    with pytest.raises(DatasetError, match="unknown dataset id"):
        load_trajectories("embodied_rl/metaworld-drawer-open-v3/nothing-v0")


def test_truncated_file_is_one_clear_error(minari_root):
    obs_space, act_space = spaces()
    write_dataset(
        [make_trajectory(0, 50)],
        "embodied_rl/cut/half-v0",
        observation_space=obs_space,
        action_space=act_space,
    )
    (data_file,) = (minari_root / "embodied_rl/cut/half-v0/data").glob("*.hdf5")
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_trajectories("embodied_rl/cut/half-v0")


def test_out_of_range_episode_indices_are_named():
    obs_space, act_space = spaces()
    write_dataset(
        [make_trajectory(e, 3) for e in range(2)],
        "embodied_rl/few/a-v0",
        observation_space=obs_space,
        action_space=act_space,
    )
    assert [t.episode_id for t in load_trajectories("embodied_rl/few/a-v0", episode_indices=[1])] == [1]
    with pytest.raises(DatasetError, match=r"episode_indices \[5, -1\] out of range.*holds 2 episodes"):
        load_trajectories("embodied_rl/few/a-v0", episode_indices=[0, 5, -1])


def test_shapes_unlike_the_env_are_one_clear_error():
    obs_space, act_space = spaces()
    write_dataset(
        [make_trajectory(0, 4)],
        "embodied_rl/shapes/a-v0",
        observation_space=obs_space,
        action_space=act_space,
    )
    env = gym.make("Pendulum-v1")  # observation (3,) like the data, action (1,) unlike it
    with pytest.raises(DatasetError, match=r"action shape \(2,\) in the dataset vs \(1,\) in the env"):
        check_dataset_matches_env("embodied_rl/shapes/a-v0", env)
    with pytest.raises(DatasetError, match="does not match"):
        load_trajectories("embodied_rl/shapes/a-v0", env=env)


def test_existing_id_needs_overwrite():
    obs_space, act_space = spaces()
    kwargs = {"observation_space": obs_space, "action_space": act_space}
    write_dataset([make_trajectory(0, 3)], "embodied_rl/twice/a-v0", **kwargs)
    with pytest.raises(DatasetError, match="already exists.*overwrite=true"):
        write_dataset([make_trajectory(0, 3)], "embodied_rl/twice/a-v0", **kwargs)
    write_dataset([make_trajectory(0, 9)], "embodied_rl/twice/a-v0", overwrite=True, **kwargs)
    assert len(load_trajectories("embodied_rl/twice/a-v0")[0]) == 9


def test_inconsistent_trajectory_is_rejected():
    good = make_trajectory(0, 4)
    with pytest.raises(DatasetError, match="expected T\\+1 = 5"):
        Trajectory(
            good.observations[:-1],
            good.actions,
            good.rewards,
            good.terminations,
            good.truncations,
            good.success,
        )
    fields = {name: getattr(good, name) for name in ("observations", "actions", "rewards", "terminations")}
    fields.update(truncations=good.truncations, success=good.success, episode_id=7)
    early = np.arange(4) == 1  # a flag before the last step
    nan_obs, inf_reward = good.observations.copy(), good.rewards.copy()
    nan_obs[2, 0], inf_reward[0] = np.nan, np.inf
    cases = {
        "terminations before its last step": {"terminations": early},
        "truncations before its last step": {"truncations": early},
        "non-finite observations": {"observations": nan_obs},
        "non-finite observations\\['state'\\]": {"observations": {"state": nan_obs}},
        "non-finite rewards": {"rewards": inf_reward},
        "actions of shape \\(4,\\)": {"actions": good.actions[:, 0]},
    }
    for message, change in cases.items():
        with pytest.raises(DatasetError, match=f"episode 7 has .*{message}"):
            Trajectory(**{**fields, **change})
    # Allowed: NaN (hidden) actions, integer pixels, and an episode both terminated and truncated at its end.
    end = np.arange(4) == 3
    Trajectory(**{**fields, "actions": np.full_like(good.actions, np.nan), "terminations": end, "truncations": end})
    Trajectory(**{**fields, "observations": {"pixels": np.zeros((5, 2, 2, 3), np.uint8)}})


# ---------------------------------------------------------------- transitions, segments, sequences


def test_transitions_pair_each_observation_with_its_successor():
    data = transitions_from_trajectories([make_trajectory(0, 4), make_trajectory(1, 6, terminal=True)])
    assert len(data) == 10 and data.obs.dtype == torch.float32
    torch.testing.assert_close(data.next_obs, data.obs + 1)  # never the next episode's first observation
    torch.testing.assert_close(data.obs[:, 0], 1000.0 * data.episode_id + data.timestep)
    assert data.terminated.tolist() == [0.0] * 9 + [1.0]
    generator = torch.Generator().manual_seed(0)
    batch = data.sample(32, generator)
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    again = data.sample(32, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.obs, again.obs)


def test_segments_never_cross_episode_boundaries():
    trajectories = [make_trajectory(e, steps, frames=True) for e, steps in enumerate([3, 12, 5, 8])]
    sampler = SegmentSampler(trajectories, length=5)
    assert sampler.num_segments == (12 - 4) + (5 - 4) + (8 - 4)  # the 3-step episode is too short
    every = sampler.gather(torch.arange(sampler.num_segments))
    random = sampler.sample(200, torch.Generator().manual_seed(1))
    for segments in (every, random):
        first = (1000 * segments.episode_id + segments.start).float()  # (N,)
        torch.testing.assert_close(segments.obs[..., 0], first[:, None] + torch.arange(6))  # (N, H+1)
        torch.testing.assert_close(segments.action[..., 0], first[:, None] + torch.arange(5))  # (N, H)
        torch.testing.assert_close(segments.reward, first[:, None] + torch.arange(5))
        assert segments.frames.shape == (len(segments), 6, 8, 8, 3)
        assert torch.equal(segments.frames[..., 0, 0, 0].long(), (segments.obs[..., 0].long() % 256))
    with pytest.raises(DatasetError, match="no episode has 20 steps"):
        SegmentSampler(trajectories, length=20)


def check_sequences(seq, seq_len):
    obs = seq.obs[..., 0]  # (B, L), 1000 * episode + t
    assert obs.shape[1] == seq_len
    assert torch.all(obs[:, 1:] - obs[:, :-1] == 1), "a window skipped steps or crossed an episode boundary"
    t = obs % 1000
    torch.testing.assert_close(seq.is_first, t == 0)
    expected_prev = torch.where(t == 0, torch.zeros_like(obs), obs - 1)  # action / reward that led here
    torch.testing.assert_close(seq.prev_action[..., 0], expected_prev)
    torch.testing.assert_close(seq.reward, expected_prev)


def test_offline_sequences_never_cross_episode_boundaries():
    trajectories = [make_trajectory(e, steps, terminal=True) for e, steps in enumerate([2, 9, 4, 6])]
    replay = SequenceReplay.from_trajectories(trajectories, seq_len=4)
    # T+1 rows per episode hold T+1 - (L-1) windows; the 2-step episode (3 rows) holds none.
    assert replay.num_windows == (10 - 3) + (5 - 3) + (7 - 3)
    seq = replay.sample(300, torch.Generator().manual_seed(0))
    check_sequences(seq, 4)
    episode, t = (seq.obs[..., 0] // 1000).long(), seq.obs[..., 0] % 1000  # (B, L)
    last_step = torch.tensor([2, 9, 4, 6])[episode]
    assert seq.is_terminal.any() and torch.equal(seq.is_terminal, t == last_step)


def test_online_sequence_replay_streams_wraparound_and_state_dict():
    replay = SequenceReplay(capacity=2 * 13, obs_shape=(OBS_DIM,), action_dim=ACT_DIM, seq_len=3, num_streams=2)
    # Two env slots; each stream's episodes (steps per episode below) fill 26 rows, wrapping its 13-row block.
    stream_0 = [(episode, t) for episode, steps in enumerate([4, 7, 2, 9]) for t in range(steps + 1)]
    stream_1 = [(50 + episode, t) for episode, steps in enumerate([6, 3, 8, 5]) for t in range(steps + 1)]
    for rows in zip(stream_0, stream_1):
        value = np.array([1000.0 * episode + t for episode, t in rows], dtype=np.float32)  # (2,)
        first = np.array([t == 0 for _, t in rows])
        prev = np.where(first, 0.0, value - 1)  # the action and reward that led to this observation
        replay.add(
            obs=np.repeat(value[:, None], OBS_DIM, 1),
            prev_action=np.repeat(prev[:, None], ACT_DIM, 1),
            reward=prev,
            is_first=first,
            is_terminal=np.zeros(2, dtype=bool),
        )
    assert len(replay) == 26 and replay.num_windows > 0
    check_sequences(replay.sample(500, torch.Generator().manual_seed(0)), 3)

    # An episode longer than the block: windows must not straddle the write head inside that episode.
    long = SequenceReplay(capacity=8, obs_shape=(OBS_DIM,), action_dim=ACT_DIM, seq_len=3)
    long.add_trajectory(make_trajectory(7, 20))
    assert long.num_windows == 8 - 2
    check_sequences(long.sample(200, torch.Generator().manual_seed(0)), 3)

    restored = SequenceReplay(capacity=26, obs_shape=(OBS_DIM,), action_dim=ACT_DIM, seq_len=3, num_streams=2)
    state = replay.state_dict()
    saved = {name: state[name].clone() for name in SequenceReplay._DATA}
    restored.load_state_dict(state)
    a, b = (r.sample(64, torch.Generator().manual_seed(3)) for r in (replay, restored))
    torch.testing.assert_close(a.obs, b.obs)
    replay.add(np.full((2, OBS_DIM), -1.0), np.ones((2, ACT_DIM)), np.ones(2), np.ones(2, bool), np.ones(2, bool))
    for name in SequenceReplay._DATA:  # a saved state is a snapshot, not a view of the live storage
        assert torch.equal(state[name], saved[name]), name


# ---------------------------------------------------------------- normalisation and replay


def test_normalizer_round_trip_and_state_dict():
    trajectories = [make_trajectory(e, 10) for e in range(3)]
    for t in trajectories:
        t.observations[:, 2] = 5.0  # a constant dimension keeps std 1
    normalizer = ObservationNormalizer.from_trajectories(trajectories)
    obs = torch.as_tensor(np.concatenate([t.observations for t in trajectories]))
    normalized = normalizer.normalize(obs)
    torch.testing.assert_close(normalized[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    assert normalizer.std[2] == 1.0
    torch.testing.assert_close(normalizer.denormalize(normalized), obs, rtol=1e-5, atol=1e-3)
    restored = ObservationNormalizer(OBS_DIM)
    restored.load_state_dict(normalizer.state_dict())
    torch.testing.assert_close(restored(obs), normalized)


def test_replay_buffer_wraps_around_and_round_trips_state_dict():
    buffer = ReplayBuffer(capacity=5, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)

    def step(i):
        return (
            np.full(OBS_DIM, i, np.float32),
            np.full(ACT_DIM, i, np.float32),
            float(i),
            np.full(OBS_DIM, i + 1),
            i % 2,
        )

    for i in range(3):  # single transitions
        buffer.add(*step(i))
    batch = [np.stack(x) for x in zip(*(step(i) for i in range(3, 7)))]  # 4 from a vector env: wraps
    buffer.add(*batch)
    assert (len(buffer), buffer.ptr) == (5, 2)
    assert buffer.obs[:, 0].tolist() == [5, 6, 2, 3, 4]  # rows 0-1 overwritten by the newest
    buffer.add(*[np.stack(x) for x in zip(step(7), step(8))], mask=np.array([True, False]))
    assert buffer.obs[:, 0].tolist() == [5, 6, 7, 3, 4] and buffer.ptr == 3

    sample = buffer.sample(64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample.next_obs, sample.obs + 1)
    torch.testing.assert_close(sample.reward, sample.obs[:, 0])
    torch.testing.assert_close(sample.terminated, sample.obs[:, 0] % 2)

    restored = ReplayBuffer(capacity=5, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    restored.load_state_dict(buffer.state_dict())
    again = restored.sample(64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.obs, sample.obs)
    assert (restored.ptr, len(restored)) == (3, 5)

    # a resumed run with another trainer.replay_size: rows move oldest first, the newest survive
    larger = ReplayBuffer(capacity=8, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    larger.load_state_dict(buffer.state_dict())
    assert larger.obs[:5, 0].tolist() == [3, 4, 5, 6, 7] and (larger.ptr, len(larger)) == (5, 5)
    larger.add(*step(9))
    assert larger.obs[:6, 0].tolist() == [3, 4, 5, 6, 7, 9]
    smaller = ReplayBuffer(capacity=3, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    smaller.load_state_dict(buffer.state_dict())
    assert smaller.obs[:, 0].tolist() == [5, 6, 7] and (smaller.ptr, len(smaller)) == (0, 3)
    with pytest.raises(ValueError, match="rows of shape"):
        ReplayBuffer(capacity=5, obs_shape=(OBS_DIM + 1,), action_dim=ACT_DIM).load_state_dict(buffer.state_dict())


def test_replay_buffer_samples_only_the_filled_rows():
    buffer = ReplayBuffer(capacity=100, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    for i in (1, 2, 3):
        buffer.add(np.full(OBS_DIM, i), np.zeros(ACT_DIM), float(i), np.full(OBS_DIM, i + 1), False)
    batch = buffer.sample(500, torch.Generator().manual_seed(0))
    assert set(batch.obs[:, 0].tolist()) == {1.0, 2.0, 3.0}  # never one of the 97 empty (zero) rows
    torch.testing.assert_close(batch.reward, batch.obs[:, 0])


def test_replay_buffer_batch_larger_than_capacity_keeps_the_newest_rows():
    from embodied_rl.data.replay import chronological_rows

    buffer = ReplayBuffer(capacity=4, obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    buffer.add(np.full(OBS_DIM, -1.0), np.zeros(ACT_DIM), -1.0, np.zeros(OBS_DIM), False)  # write head at row 1
    values = np.arange(6, dtype=np.float32)  # 6 rows from a vector env into 4
    column = np.repeat(values[:, None], OBS_DIM, axis=1)
    buffer.add(column, np.zeros((6, ACT_DIM)), values, column + 1, np.zeros(6))
    assert (len(buffer), buffer.ptr) == (4, 1)
    assert buffer.obs[chronological_rows(buffer.state_dict()), 0].tolist() == [2, 3, 4, 5]
    torch.testing.assert_close(buffer.next_obs, buffer.obs + 1)
    torch.testing.assert_close(buffer.reward, buffer.obs[:, 0])


def test_replay_buffer_refuses_fields_with_different_row_counts():
    buffer = ReplayBuffer(8, (2,), ACT_DIM)
    with pytest.raises(ValueError, match="different numbers of rows"):  # one observation, three rewards
        buffer.add(np.zeros(2), np.zeros((3, ACT_DIM)), np.zeros(3), np.zeros((3, 2)), np.zeros(3))
    assert len(buffer) == 0


def test_replay_buffer_stores_dict_observations_one_tensor_per_key():
    space = gym.spaces.Dict(
        {"pixels": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8), "state": gym.spaces.Box(-1, 1, (2,), np.float32)}
    )
    action_space = gym.spaces.Box(-1, 1, (ACT_DIM,), np.float32)
    buffer = ReplayBuffer.from_spaces(4, space, action_space)
    assert buffer.obs["pixels"].dtype == torch.uint8 and buffer.obs["state"].dtype == torch.float32
    assert ReplayBuffer.nbytes(4, space, action_space) == 4 * (2 * (48 + 2 * 4) + 4 * (ACT_DIM + 2))

    def obs(i):  # a batch of two from a vector env, rows i and i + 1
        return {"pixels": np.stack([np.full((4, 4, 3), j, np.uint8) for j in (i, i + 1)]), "state": np.full((2, 2), i)}

    for i in (0, 2, 4):  # 6 rows into 4: wraps
        buffer.add(obs(i), np.zeros((2, ACT_DIM)), np.array([i, i + 1]), obs(i + 10), np.zeros(2))
    assert buffer.obs["pixels"][:, 0, 0, 0].tolist() == [4, 5, 2, 3] and (buffer.ptr, len(buffer)) == (2, 4)
    batch = buffer.sample(32, torch.Generator().manual_seed(0))
    assert set(batch.obs) == set(batch.next_obs) == {"pixels", "state"} and batch.obs["pixels"].shape == (32, 4, 4, 3)
    torch.testing.assert_close(batch.next_obs["pixels"][:, 0, 0, 0], batch.obs["pixels"][:, 0, 0, 0] + 10)
    torch.testing.assert_close(batch.obs["pixels"][:, 0, 0, 0].float(), batch.reward)

    state = buffer.state_dict()
    assert state["obs"]["pixels"].shape == (4, 4, 4, 3) and state["next_obs"]["state"].shape == (4, 2)
    restored = ReplayBuffer.from_spaces(4, space, action_space)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.sample(32, torch.Generator().manual_seed(0)).obs, batch.obs)
    larger = ReplayBuffer.from_spaces(6, space, action_space)  # a resume with another trainer.replay_size
    larger.load_state_dict(state)
    assert larger.obs["pixels"][:4, 0, 0, 0].tolist() == [2, 3, 4, 5] and (larger.ptr, len(larger)) == (4, 4)
    with pytest.raises(ValueError, match="replay state holds"):
        ReplayBuffer(4, (2,), ACT_DIM).load_state_dict(state)


def test_available_memory_reads_the_host_or_is_unknown():
    from embodied_rl.memory import available_memory

    free = available_memory("cpu")
    if sys.platform.startswith("linux"):  # /proc/meminfo exists: the check must not silently switch off
        assert free is not None and free > 0
    else:
        assert free is None or free > 0
    assert available_memory("meta") is None


def test_available_memory_respects_a_cgroup_limit(tmp_path, monkeypatch):
    """A Slurm job or container limited to less than the host's free memory: the check must use the limit."""
    from embodied_rl import memory

    def write(path, text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def headroom(proc_cgroup: str, mounts: list[str]) -> int | None:
        write(tmp_path / "cgroup", proc_cgroup)
        write(tmp_path / "mountinfo", "".join(f"{i} 1 0:{i} {line}\n" for i, line in enumerate(mounts, 30)))
        return memory.cgroup_memory_headroom(str(tmp_path / "cgroup"), str(tmp_path / "mountinfo"))

    # cgroup v2, mounted at an unusual place: the job's own cgroup is unlimited, its parent allows 8 GB, of which
    # 3 GB are used, 1 GB of that reclaimable page cache.
    v2 = tmp_path / "v2"
    write(v2 / "job_7/memory.max", f"{8 * 10**9}\n")
    write(v2 / "job_7/memory.current", f"{3 * 10**9}\n")
    write(v2 / "job_7/memory.stat", f"anon 1\ninactive_file {10**9}\n")
    write(v2 / "job_7/step_0/memory.max", "max\n")
    write(v2 / "job_7/step_0/memory.current", "5\n")
    v2_mount = f"/ {v2} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate"
    assert headroom("0::/job_7/step_0\n", [v2_mount]) == 6 * 10**9
    # cgroup v1 in a container: its own cgroup /ctr is mounted as the root of the memory hierarchy; the cpu
    # hierarchy is ignored.
    v1 = tmp_path / "v1"
    write(v1 / "memory.limit_in_bytes", f"{2 * 10**9}\n")
    write(v1 / "memory.usage_in_bytes", f"{5 * 10**8}\n")
    mounts = [f"/ctr {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu,cpuacct", f"/ctr {v1} rw - cgroup cgroup rw,memory"]
    assert headroom("5:cpu,cpuacct:/ctr\n4:memory:/ctr\n", mounts) == 15 * 10**8
    write(v1 / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "unlimited"
    assert headroom("4:memory:/ctr\n", mounts) is None
    assert headroom("4:memory:/ctr\n", []) is None  # no cgroup file system mounted
    assert memory.cgroup_memory_headroom(str(tmp_path / "missing")) is None

    monkeypatch.setattr(memory, "cgroup_memory_headroom", lambda: 12345)  # tighter than any real host
    assert memory.available_memory("cpu") == 12345


# ---------------------------------------------------------------- behaviour policies


def test_graded_noise_and_checkpoint_hook():
    space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    zero = NoisyPolicy(lambda obs, info: np.zeros(ACT_DIM), space, noise_std=0.0, epsilon=0.0, seed=0)
    assert np.all(zero(None, {}) == 0)
    noisy = NoisyPolicy(lambda obs, info: np.ones(ACT_DIM), space, noise_std=5.0, seed=0)
    actions = np.stack([noisy(None, {}) for _ in range(100)])
    assert actions.max() == 1.0 and actions.min() == -1.0  # clipped to the bounds
    always_random = NoisyPolicy(lambda obs, info: np.full(ACT_DIM, 0.5), space, epsilon=1.0, seed=0)
    assert not np.any(np.stack([always_random(None, {}) for _ in range(20)]) == 0.5)
    assert space.contains(RandomPolicy(space, seed=0)(None, {}))
    env = gym.make("Pendulum-v1")
    with pytest.raises(FileNotFoundError, match="no such run directory or checkpoint"):  # tests/test_datasets.py
        make_behaviour_policy("checkpoint", env, "mujoco/Pendulum", checkpoint="runs/x")


def test_collect_dataset_with_a_plain_gym_env(minari_root):
    env = gym.make("Pendulum-v1", max_episode_steps=6)
    fake_frame = lambda env, obs: np.full((4, 4, 3), 7, np.uint8)  # noqa: E731 (Pendulum renders via pygame)
    dataset, stats = collect_dataset(
        env,
        RandomPolicy(env.action_space, 0),
        "embodied_rl/pendulum/random-v0",
        episodes=3,
        seed=5,
        record_frames=True,
        frame_fn=fake_frame,
        flush_every=2,
        progress=False,
    )
    assert stats["episodes"] == 3 and dataset.total_episodes == 3
    trajectories = load_trajectories("embodied_rl/pendulum/random-v0", env=env)
    assert [t.seed for t in trajectories] == [5, 6, 7]
    assert all(t.frames.shape == (7, 4, 4, 3) and t.truncations[-1] for t in trajectories)
    assert open_dataset("embodied_rl/pendulum/random-v0").storage.metadata["embodied_rl"]["collection"] == stats


KILLED_COLLECTION = """
import os, signal
import gymnasium as gym
from embodied_rl.data import RandomPolicy, collect_dataset

env = gym.make("Pendulum-v1", max_episode_steps=6)
random_actions, calls = RandomPolicy(env.action_space, 0), 0

def policy(obs, info=None):  # killed in the 6th episode: 2 chunks of 2 written (flush_every=2), the 5th not yet
    global calls
    calls += 1
    if calls == 32:
        os.kill(os.getpid(), signal.SIGKILL)
    return random_actions(obs, info)

collect_dataset(env, policy, "embodied_rl/pendulum/killed-v0", episodes=6, flush_every=2, progress=False)
"""


def test_a_killed_collection_leaves_a_dataset_that_loading_refuses(minari_root):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}
    result = subprocess.run([sys.executable, "-c", KILLED_COLLECTION], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    dataset_id = "embodied_rl/pendulum/killed-v0"
    assert minari.load_dataset(dataset_id).total_episodes == 4  # two chunks are on disk, the flag survived the append
    with pytest.raises(DatasetError, match="is incomplete: its writing was interrupted"):
        load_trajectories(dataset_id)
    pendulum = gym.make("Pendulum-v1", max_episode_steps=6)
    with pytest.raises(DatasetError, match="is incomplete: .* overwrite=true"):
        collect_dataset(pendulum, RandomPolicy(pendulum.action_space, 0), dataset_id, episodes=1)
    collect_dataset(pendulum, RandomPolicy(pendulum.action_space, 0), dataset_id, episodes=3, overwrite=True,
                    flush_every=2, progress=False)  # fmt: skip
    assert len(load_trajectories(dataset_id)) == 3  # written again: complete


KILLED_FIRST_WRITE = """
import os, signal, sys
import gymnasium as gym
import minari
from embodied_rl.data import RandomPolicy, collect_dataset, minari_io

real_create = minari.create_dataset_from_buffers

def create_then_die(dataset_id, *args, **kwargs):  # killed as Minari writes the first chunk, or right after
    if sys.argv[1] == "during":
        minari_io.get_dataset_path(dataset_id).joinpath("data").mkdir(parents=True)  # a folder, no metadata yet
    else:
        real_create(dataset_id, *args, **kwargs)  # a whole readable dataset of one chunk, no flag set yet
    os.kill(os.getpid(), signal.SIGKILL)

minari.create_dataset_from_buffers = create_then_die
env = gym.make("Pendulum-v1", max_episode_steps=6)
collect_dataset(env, RandomPolicy(env.action_space, 0), "embodied_rl/pendulum/killed-v0", episodes=6, flush_every=2,
                progress=False)
"""


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_collection_killed_in_its_first_write_is_marked_incomplete(minari_root, when):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}
    result = subprocess.run([sys.executable, "-c", KILLED_FIRST_WRITE, when], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    dataset_id = "embodied_rl/pendulum/killed-v0"
    assert minari_io.is_incomplete(dataset_id)
    with pytest.raises(DatasetError, match="is incomplete: its writing was interrupted"):
        load_trajectories(dataset_id)
    pendulum = gym.make("Pendulum-v1", max_episode_steps=6)
    collect_dataset(pendulum, RandomPolicy(pendulum.action_space, 0), dataset_id, episodes=3, overwrite=True,
                    flush_every=2, progress=False)  # fmt: skip
    assert len(load_trajectories(dataset_id)) == 3 and not minari_io.is_incomplete(dataset_id)
    assert not minari_io.incomplete_marker(dataset_id).exists()


def test_rollout_stops_after_max_steps_as_a_truncation():
    from embodied_rl.data.collection import rollout

    env = gym.make("Pendulum-v1")  # its own time limit is 200 steps
    trajectory = rollout(env, RandomPolicy(env.action_space, 0), seed=0, max_steps=5)
    assert len(trajectory) == 5 and trajectory.observations.shape == (6, 3)
    assert trajectory.truncations.tolist() == [False] * 4 + [True] and not trajectory.terminations.any()


# ---------------------------------------------------------------- Meta-World: collect -> Minari -> load

TASK = "metaworld/drawer-open-v3"


def test_collect_metaworld_round_trip():
    from embodied_rl.envs import make_env

    env = make_env(task=TASK, obs_mode="state", time_limit=12, seed=0)
    policy = make_behaviour_policy("scripted", env, TASK, noise_std=0.1, epsilon=0.1, seed=0)
    dataset_id = dataset_id_for(TASK, "scripted-noise10-eps10")
    dataset, stats = collect_dataset(env, policy, dataset_id, episodes=2, seed=3, progress=False)

    reopened = minari.load_dataset(dataset_id)
    assert reopened.total_episodes == 2 and reopened.total_steps == 24
    assert reopened.recover_environment().observation_space.shape == env.observation_space.shape
    trajectories = load_trajectories(dataset_id, env=env)
    for trajectory in trajectories:
        assert trajectory.observations.shape == (13, *env.observation_space.shape)
        assert trajectory.actions.shape == (12, *env.action_space.shape)
        assert trajectory.success.dtype == bool and trajectory.truncations[-1] and trajectory.frames is None
        assert "near_object" in trajectory.infos
    assert stats["success_rate"] == np.mean([t.succeeded for t in trajectories])
    assert transitions_from_trajectories(trajectories).obs.shape == (24, *env.observation_space.shape)


def test_collect_cli_with_frames(tmp_path, minari_root):
    """The Hydra script end to end (subprocess): frames at 32x32, reference scores, the overwrite guard."""
    command = [
        sys.executable,
        str(REPO / "scripts/collect.py"),
        "episodes=2",
        "env.time_limit=10",
        "env.image_size=32",
        "record_frames=true",
        "reference.episodes=1",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    environ = dict(os.environ)  # MUJOCO_GL as conftest chose it
    done = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    dataset_id = "embodied_rl/metaworld-drawer-open-v3/expert-frames-v0"
    assert f"wrote {dataset_id}" in done.stdout

    trajectories = load_trajectories(dataset_id)
    assert [t.frames.shape for t in trajectories] == [(11, 32, 32, 3)] * 2
    assert trajectories[0].frames.dtype == np.uint8 and trajectories[0].frames.std() > 0
    metadata = open_dataset(dataset_id).storage.metadata
    assert {"ref_min_score", "ref_max_score"} <= set(metadata) and "success rate" in metadata["description"]
    assert metadata["jpeg_encoding"] is False

    again = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=240)
    assert again.returncode != 0 and "already exists" in again.stderr and "overwrite=true" in again.stderr


def test_replay_state_dict_saves_only_filled_rows(tmp_path):
    """A checkpoint of a mostly empty buffer must not contain the whole preallocated storage."""
    buffer = ReplayBuffer(100_000, (39,), 4)
    for _ in range(10):
        buffer.add(np.zeros(39, np.float32), np.zeros(4, np.float32), 0.0, np.zeros(39, np.float32), False)
    torch.save(buffer.state_dict(), tmp_path / "replay.pt")
    assert (tmp_path / "replay.pt").stat().st_size < 100_000  # full storage would be ~32 MB


def test_write_dataset_stores_its_metadata():
    obs_space, act_space = spaces()
    dataset_id = dataset_id_for("synthetic/counting", "scored")
    metadata = {"ref_min_score": -5.0, "ref_max_score": 50.0}
    write_dataset(
        [make_trajectory(0, 3)], dataset_id, observation_space=obs_space, action_space=act_space, metadata=metadata
    )
    stored = open_dataset(dataset_id).storage.metadata
    assert {key: stored[key] for key in metadata} == metadata


@pytest.mark.parametrize("kind, noise", [("scripted", {"noise_std": 0.3, "epsilon": 0.3}), ("random", {})])
def test_behaviour_policies_are_reproducible_from_their_seed(kind, noise):
    from embodied_rl.envs import make_env

    env = make_env(task="metaworld/reach-v3", seed=0)
    obs, info = env.reset()

    def actions(seed):
        policy = make_behaviour_policy(kind, env, "metaworld/reach-v3", seed=seed, **noise)
        return np.stack([policy(obs, info) for _ in range(10)])

    np.testing.assert_array_equal(actions(0), actions(0))
    assert not np.array_equal(actions(0), actions(1))


def test_sequence_replay_keeps_the_newest_rows_of_an_episode_longer_than_its_block():
    replay = SequenceReplay(capacity=8, obs_shape=(OBS_DIM,), action_dim=ACT_DIM, seq_len=3)
    replay.add_trajectory(make_trajectory(0, 20, terminal=True))  # 21 rows, t = 0..20
    seq = replay.sample(200, torch.Generator().manual_seed(0))
    t = seq.obs[..., 0]
    assert t.min() == 21 - 8 and t.max() == 20 and seq.is_terminal[t == 20].all()


def test_recorded_frames_of_stacked_pixel_observations_are_the_current_view():
    from embodied_rl.data.collection import rollout
    from embodied_rl.envs import make_env

    env = make_env(task="mujoco/Hopper-v5", obs_mode="pixels", image_size=32, frame_stack=2, time_limit=3, seed=0)
    trajectory = rollout(env, lambda obs, info: np.ones(3, np.float32), seed=0, record_frames=True)
    assert trajectory.frames.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(trajectory.frames[-1], env.render())  # the frame after the last step
    np.testing.assert_array_equal(trajectory.frames, trajectory.observations[..., -3:])  # stacks: newest last

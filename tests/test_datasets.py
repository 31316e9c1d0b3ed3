"""Graded offline datasets: embodied_rl.pipelines.offline_datasets, load_checkpoint_policy and scripts/make_datasets.py.

Meta-World tiers are built once (drawer-open, 7 full-length episodes per tier: at short time limits the
medium tier cannot be told from random), the D4RL tiers from a tiny SAC run of scripts/train.py on Hopper
(300 steps, 2 envs, 30-step episodes, checkpoints every 100 steps, all kept). Every dataset lives under a
tmp MINARI_DATASETS_PATH: the user's ~/.minari is never touched.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from script_helpers import load_script, train_in_process

from embodied_rl.data import (
    DatasetError,
    ReplayBuffer,
    Trajectory,
    load_trajectories,
    open_dataset,
    write_dataset,
)
from embodied_rl.data.collection import iterate_schedule
from embodied_rl.data.minari_io import INCOMPLETE_KEY, dataset_exists, update_metadata
from embodied_rl.pipelines.offline_datasets import (
    MEDIUM_NOISE,
    MIXED_LEVELS,
    RecipeError,
    _stored_settings,
    episodes_from_replay,
    eval_returns_from_metrics,
    make_behaviour_policy,
    metaworld_tiers,
    pick_medium_step,
    sac_run_tiers,
    split_episodes,
    tier_summary,
)
from embodied_rl.trainers.loading import load_checkpoint_policy

MW_TASK, MW_EPISODES = "metaworld/drawer-open-v3", 7
RUN_TASK, RUN_TIME_LIMIT, RUN_ENVS = "mujoco/Hopper-v5", 30, 2
TINY_SAC = [
    "experiment=sac_mujoco", f"env.task={RUN_TASK}", f"env.time_limit={RUN_TIME_LIMIT}", "agent.hidden_dims=[16,16]",
    "trainer.total_steps=300", "trainer.seed_steps=240", "trainer.utd_ratio=0.25", "trainer.batch_size=16",
    "trainer.eval_every=100", "trainer.checkpoint_every=100", "trainer.eval_episodes=2", "trainer.eval_videos=0",
    "trainer.keep_checkpoints=0", f"trainer.num_envs={RUN_ENVS}", "trainer.replay_size=1000",
    "trainer.progress=false", "trainer.log_every=100", "logging.console=false", "logging.tensorboard=false",
    "device=cpu",
]  # fmt: skip


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(scope="module")
def metaworld_root(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("metaworld")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        rows = metaworld_tiers(MW_TASK, MW_EPISODES, reference_episodes=2, progress=False)
    return root, {row["tier"]: row for row in rows}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "hopper"
    train_in_process([*TINY_SAC, f"run_dir={run_dir}"])
    return run_dir


def tiny_env(run_dir: Path):
    from omegaconf import OmegaConf

    from embodied_rl.envs import make_env

    return make_env(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").env, resolve=True))


# ---------------------------------------------------------------- Meta-World tiers


def test_metaworld_tiers_are_ordered_by_quality(metaworld_root, monkeypatch):
    root, rows = metaworld_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert list(rows) == ["expert", "medium", "random", "mixed"]
    expert, medium, random, mixed = (rows[t] for t in ("expert", "medium", "random", "mixed"))
    assert random["return_mean"] < medium["return_mean"] < expert["return_mean"]
    assert random["return_mean"] < mixed["return_mean"] < expert["return_mean"]
    assert random["success_rate"] < medium["success_rate"] < expert["success_rate"] == 1.0
    for tier, row in rows.items():
        dataset_id = f"embodied_rl/metaworld-drawer-open-v3/{tier}-v0"
        assert row["dataset_id"] == dataset_id and row["episodes"] == MW_EPISODES and row["status"] == "built"
        trajectories = load_trajectories(dataset_id)
        assert row["steps"] == sum(len(t) for t in trajectories) == MW_EPISODES * 500
        metadata = open_dataset(dataset_id).storage.metadata
        assert metadata["ref_min_score"] < metadata["ref_max_score"]  # random < noise-free expert
        stats = metadata["embodied_rl"]["collection"]
        assert stats["success_rate"] == pytest.approx(np.mean([t.succeeded for t in trajectories]))
        assert stats["return_mean"] == pytest.approx(np.mean([t.episode_return for t in trajectories]))
        assert metadata["embodied_rl"]["recipe"]["tier"] == tier and "success rate" in metadata["description"]
    noise_std, epsilon = MEDIUM_NOISE["drawer-open-v3"]
    medium_recipe = open_dataset(medium["dataset_id"]).storage.metadata["embodied_rl"]["recipe"]
    assert (medium_recipe["noise_std"], medium_recipe["epsilon"]) == (noise_std, epsilon)


def test_mixed_tier_runs_from_very_noisy_to_expert(metaworld_root, monkeypatch):
    root, rows = metaworld_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    levels = open_dataset(rows["mixed"]["dataset_id"]).storage.metadata["embodied_rl"]["recipe"]["levels"]
    assert [(lv["noise_std"], lv["epsilon"]) for lv in levels] == list(MIXED_LEVELS)
    assert [lv["episodes"] for lv in levels] == split_episodes(MW_EPISODES, len(MIXED_LEVELS)) == [1] * 7
    mixed = load_trajectories(rows["mixed"]["dataset_id"])
    expert = load_trajectories(rows["expert"]["dataset_id"])
    # the last level is the noise-free expert on the same reset seed: the very same episode
    assert mixed[-1].seed == expert[-1].seed
    np.testing.assert_array_equal(mixed[-1].actions, expert[-1].actions)
    assert not np.array_equal(mixed[0].actions, expert[0].actions)
    assert mixed[0].episode_return < mixed[-1].episode_return and not mixed[0].succeeded


def test_make_datasets_keeps_existing_tiers_unless_overwrite(minari_root, capsys):
    script = load_script("make_datasets")
    args = [
        "metaworld",
        "--tasks",
        "drawer-open-v3",
        "--tiers",
        "random",
        "--time-limit",
        "20",
        "--reference-episodes",
        "1",
        "--no-progress",
        "--root",
        str(minari_root),
    ]
    first = script.main([*args, "--episodes", "2"])
    again = script.main([*args, "--episodes", "2"])
    assert [(r["status"], r["episodes"], r["steps"]) for r in first] == [("built", 2, 40)]
    assert [(r["status"], r["episodes"]) for r in again] == [("exists", 2)]
    table = capsys.readouterr().out
    for column in ("| tier", "episodes", "steps", "return", "success", "ref random", "ref expert"):
        assert column in table
    with pytest.raises(SystemExit, match=r"random-v0\) exists with other settings: episodes 2 \(requested 3\);"):
        script.main([*args, "--episodes", "3"])
    replaced = script.main([*args, "--episodes", "3", "--overwrite"])
    assert [(r["status"], r["episodes"]) for r in replaced] == [("built", 3)]


def test_make_datasets_errors_are_one_clear_line(tmp_path, tiny_run):
    script = load_script("make_datasets")
    cases = {
        ("metaworld", "--tasks", "drawer-open-v3,drawer-opn-v3"): "Did you mean: metaworld/drawer-open-v3",
        ("metaworld", "--tasks", "Hopper-v5"): "not a Meta-World task",
        ("metaworld", "--tiers", "expert,great"): "unknown tier",
        ("mujoco", "--run", str(tmp_path / "nowhere")): "does not exist",
        ("mujoco", "--run", str(tmp_path)): "no config.yaml",
        ("mujoco", "--run", str(tiny_run), "--task", "Walker2d-v5"): "differs from the run's task",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit, match=message):
            script.main([*args, "--episodes", "1", "--no-progress"])


def test_make_datasets_rejects_empty_tier_and_task_lists():
    script = load_script("make_datasets")
    cases = {
        ("metaworld", "--tiers", ""): "--tiers '' names no tier",
        ("metaworld", "--tasks", " , "): "--tasks ' , ' names no task",
        ("mujoco", "--run", "nowhere", "--tiers", ","): "--tiers ',' names no tier",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit, match=f"^\\[make_datasets\\] error: {message}$"):
            script.main([*args, "--no-progress"])
    assert script.format_table([]).count("\n") == 1  # header and rule only


def test_existing_tier_built_with_other_settings_is_an_error():
    """A kept tier must match the request: else its reference returns or data differ from the new tiers'."""
    tiny = {"time_limit": 20, "progress": False}
    metaworld_tiers(MW_TASK, 1, tiers=["random"], reference_episodes=1, **tiny)
    message = (
        r"^tier random \(embodied_rl/metaworld-drawer-open-v3/random-v0\) exists with other settings: "
        r"reference episodes 1 \(requested 2\), env.time_limit 20 \(requested 30\); pass the same options, "
        r"rebuild it with --overwrite, or delete it$"
    )
    with pytest.raises(RecipeError, match=message):
        metaworld_tiers(MW_TASK, 1, tiers=["random", "expert"], reference_episodes=2, time_limit=30, progress=False)
    assert not dataset_exists("embodied_rl/metaworld-drawer-open-v3/expert-v0")  # checked before building
    metaworld_tiers(MW_TASK, 1, tiers=["medium"], reference_episodes=1, medium=(0.0, 0.5), **tiny)
    epsilon = MEDIUM_NOISE["drawer-open-v3"][1]
    with pytest.raises(RecipeError, match=rf"tier medium .* recipe.epsilon 0.5 \(requested {epsilon}\);"):
        metaworld_tiers(MW_TASK, 1, tiers=["random", "medium"], reference_episodes=1, **tiny)
    with pytest.raises(RecipeError, match=r"tier random .* seed 0 \(requested 1\);"):
        metaworld_tiers(MW_TASK, 1, tiers=["random"], reference_episodes=1, seed=1, **tiny)
    rows = metaworld_tiers(MW_TASK, 1, tiers=["random", "medium"], reference_episodes=1, medium=(0, 0.5), **tiny)
    assert [row["status"] for row in rows] == ["exists", "exists"]


def test_medium_tier_of_a_task_without_measured_noise_warns():
    tiny = {"time_limit": 5, "progress": False, "reference_episodes": 1, "tiers": ["medium"]}
    message = "measured for drawer-open-v3, .* only; reach-v3 gets noise_std 0.0, epsilon 0.8"
    with pytest.warns(UserWarning, match=message):
        metaworld_tiers("metaworld/reach-v3", 1, **tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metaworld_tiers("metaworld/reach-v3", 1, **tiny)  # kept, not built: nothing to warn about
        metaworld_tiers("metaworld/reach-v3", 1, medium=(0.0, 0.5), overwrite=True, **tiny)  # chosen by the user
        metaworld_tiers(MW_TASK, 1, **tiny)  # measured


def test_ctrl_c_in_make_datasets_is_one_line_and_exit_130(monkeypatch, capsys):
    import embodied_rl.pipelines.offline_datasets

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embodied_rl.pipelines.offline_datasets, "metaworld_tiers", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        load_script("make_datasets").main(["metaworld", "--tasks", "reach-v3", "--episodes", "1", "--no-progress"])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "[make_datasets] interrupted: the tier being written was removed" in err and "Traceback" not in err


def test_an_interrupted_tier_is_built_again():
    tiny = {"time_limit": 20, "progress": False}
    metaworld_tiers(MW_TASK, 2, tiers=["random"], reference_episodes=1, **tiny)
    dataset_id = "embodied_rl/metaworld-drawer-open-v3/random-v0"
    update_metadata(open_dataset(dataset_id), {INCOMPLETE_KEY: True})  # as a killed build leaves it
    with pytest.raises(DatasetError, match="is incomplete"):
        open_dataset(dataset_id)
    rows = metaworld_tiers(MW_TASK, 2, tiers=["random"], reference_episodes=1, **tiny)
    assert [(row["status"], row["episodes"]) for row in rows] == [("built", 2)]
    assert len(load_trajectories(dataset_id)) == 2


def test_existing_tier_is_checked_only_on_the_settings_its_metadata_holds():
    """A tier built before `seed` or `num_episodes_average_score` were stored is not refused for them."""
    assert _stored_settings({"total_episodes": 2, "embodied_rl": {"env": {"time_limit": 20}}}) == {
        "episodes": 2,
        "env.time_limit": 20,
    }
    tiny = {"time_limit": 20, "progress": False}
    metaworld_tiers(MW_TASK, 1, tiers=["random"], reference_episodes=1, **tiny)
    dataset = open_dataset("embodied_rl/metaworld-drawer-open-v3/random-v0")
    ours = dict(dataset.storage.metadata["embodied_rl"])
    del ours["seed"]
    update_metadata(dataset, {"embodied_rl": ours})
    rows = metaworld_tiers(MW_TASK, 1, tiers=["random"], reference_episodes=1, seed=1, **tiny)
    assert [row["status"] for row in rows] == ["exists"]


def test_make_datasets_rejects_medium_noise_out_of_range(minari_root):
    script = load_script("make_datasets")
    for noise in ("0,1.5", "-0.1,0.5", "0,-0.2"):
        message = rf"^\[make_datasets\] error: --medium-noise needs STD >= 0 and 0 <= EPS <= 1, got '{noise}'$"
        with pytest.raises(SystemExit, match=message):
            script.main(["metaworld", "--tasks", "drawer-open-v3", f"--medium-noise={noise}", "--no-progress"])
    assert not minari_root.exists() or not any(minari_root.rglob("*.hdf5"))  # nothing built


def test_make_datasets_medium_noise_is_the_medium_tiers_noise_std_and_epsilon(minari_root):
    script = load_script("make_datasets")
    args = ["metaworld", "--tasks", "drawer-open-v3", "--tiers", "medium", "--medium-noise", "0.1,0.5"]
    (row,) = script.main([*args, "--episodes", "1", "--time-limit", "5", "--reference-episodes", "1", "--no-progress"])
    recipe = open_dataset(row["dataset_id"]).storage.metadata["embodied_rl"]["recipe"]
    assert (recipe["noise_std"], recipe["epsilon"]) == (0.1, 0.5)


def test_make_datasets_passes_the_mujoco_options_to_the_recipe(monkeypatch):
    import inspect

    from embodied_rl.pipelines import offline_datasets as recipes

    calls, signature = [], inspect.signature(recipes.sac_run_tiers)

    def fake_sac_run_tiers(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return [], {}

    monkeypatch.setattr(recipes, "sac_run_tiers", fake_sac_run_tiers)
    options = ["--episodes", "3", "--seed", "7", "--medium-fraction", "0.5", "--expert-step", "200"]
    load_script("make_datasets").main(["mujoco", "--run", "runs/x", "--task", "Hopper-v5", *options, "--no-progress"])
    (call,) = calls
    chosen = {key: call[key] for key in ("run_dir", "episodes", "task", "seed", "medium_fraction", "expert_step")}
    assert chosen == {
        "run_dir": "runs/x",
        "episodes": 3,
        "task": "Hopper-v5",
        "seed": 7,
        "medium_fraction": 0.5,
        "expert_step": 200,
    }
    assert call["medium_step"] is None and call["progress"] is False


def test_normalized_score_is_zero_at_the_random_reference_and_100_at_the_expert():
    from embodied_rl.trainers import normalized_score

    assert [normalized_score(r, 10.0, 50.0) for r in (10.0, 30.0, 50.0, 70.0)] == [0.0, 50.0, 100.0, 150.0]
    assert normalized_score(30.0, None, 50.0) is None and normalized_score(30.0, 50.0, 50.0) is None


def test_tier_summary_normalises_the_return_between_the_reference_scores():
    """D4RL's normalised score: 0 at the random policy's reference return, 100 at the expert's."""
    zeros = np.zeros(3, dtype=bool)
    trajectory = Trajectory(np.zeros((4, 2), np.float32), np.zeros((3, 1), np.float32), np.ones(3), zeros, zeros, zeros)
    dataset_id = "embodied_rl/summary/medium-v0"
    dataset = write_dataset(
        [trajectory],
        dataset_id,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (1,), np.float32),
    )
    collection = {"return_mean": 20.0, "success_rate": 0.5}
    update_metadata(dataset, {"ref_min_score": 10.0, "ref_max_score": 50.0, "embodied_rl": {"collection": collection}})
    row = tier_summary(dataset_id, "medium")
    assert (row["ref_min"], row["ref_max"], row["return_mean"]) == (10.0, 50.0, 20.0)
    assert row["normalized"] == pytest.approx(25.0)
    assert (row["episodes"], row["steps"]) == (1, 3)


# ---------------------------------------------------------------- replay buffer -> episodes


def test_episodes_from_replay_recovers_boundaries_after_wraparound():
    """Two envs (rows interleaved), episodes ending by termination or by the time limit (the env is reset, so
    the next row does not continue the last one), a buffer that wrapped: every episode comes back whole."""
    lengths = {0: [(7, True), (5, False), (9, True), (5, False), (4, True), (6, False)],
               1: [(5, False), (3, True), (5, False), (8, True), (5, False), (12, False)]}  # fmt: skip
    streams = {}
    for k, episodes in lengths.items():
        rows = []  # (obs, next_obs, terminated) with obs = (env, episode, t)
        for e, (length, terminal) in enumerate(episodes):
            rows += [([k, e, t], [k, e, t + 1], terminal and t == length - 1) for t in range(length)]
        streams[k] = rows
    steps = min(len(rows) for rows in streams.values())  # 36 steps of 2 envs
    buffer = ReplayBuffer(capacity=51, obs_shape=(3,), action_dim=1)  # odd capacity: wraps mid-batch
    for t in range(steps):
        obs, next_obs, terminated = (np.array([streams[k][t][i] for k in (0, 1)], np.float32) for i in range(3))
        buffer.add(obs, obs[:, 2:], obs[:, 2], next_obs, terminated)
    assert buffer.size == 51 and buffer.ptr == (2 * steps) % 51

    trajectories = episodes_from_replay(buffer.state_dict(), num_envs=2, total_added=2 * steps)
    assert sum(len(t) for t in trajectories) == 51
    kept = {k: streams[k][:steps] for k in (0, 1)}
    first_rows = 2 * steps - 51  # global rows older than this were overwritten
    expected = []
    for k in (0, 1):
        for e in {row[0][1] for i, row in enumerate(kept[k]) if 2 * i + k >= first_rows}:
            rows = [(2 * i + k, row) for i, row in enumerate(kept[k]) if row[0][1] == e and 2 * i + k >= first_rows]
            cut = e == kept[k][-1][0][1]  # still running at the checkpoint
            expected.append((rows[0][0], k, e, rows[0][1][0][2], len(rows), rows[-1][1][2], cut))
    expected.sort()
    assert len(trajectories) == len(expected)
    for trajectory, (_, k, e, t0, length, terminal, cut) in zip(trajectories, expected):
        obs = trajectory.observations
        assert (obs[:, 0] == k).all() and (obs[:, 1] == e).all()
        np.testing.assert_array_equal(obs[:, 2], t0 + np.arange(length + 1))  # no step lost or repeated
        np.testing.assert_array_equal(trajectory.actions[:, 0], obs[:-1, 2])
        assert trajectory.terminations.sum() == terminal and trajectory.terminations[-1] == terminal
        assert trajectory.truncations[-1] == (not terminal) and trajectory.truncations[:-1].sum() == 0
        assert not (cut and terminal)


def test_pick_medium_step_is_the_first_checkpoint_reaching_the_fraction():
    scores = {10: 0.0, 20: 20.0, 30: 40.0, 40: 30.0, 50: 100.0}
    assert pick_medium_step(scores) == 30  # first >= 100 / 3
    assert pick_medium_step(scores, fraction=0.5) == 30  # none of the earlier reach 50: the closest (40)
    assert pick_medium_step({**scores, 40: 45.0}, fraction=0.5) == 40
    assert pick_medium_step({10: 5.0}) == 10
    # the expert is an earlier checkpoint (the final one dipped): the fraction is of its score, before it
    dipped = {**scores, 60: 10.0}
    assert pick_medium_step(dipped) == 20  # first >= 10 / 3
    assert pick_medium_step(dipped, expert_step=50) == 30
    assert pick_medium_step(dipped, fraction=0.5, expert_step=30) == 20


# ---------------------------------------------------------------- checkpoints of a tiny SAC run


def test_load_checkpoint_policy_rebuilds_the_saved_agent(tiny_run):
    from embodied_rl.trainers.checkpoint import load_checkpoint
    from embodied_rl.trainers.loading import load_checkpoint_policy

    env = tiny_env(tiny_run)
    obs, info = env.reset(seed=0)
    final, first = tiny_run / "checkpoints" / "step_000000300.pt", tiny_run / "checkpoints" / "step_000000100.pt"
    greedy = load_checkpoint_policy(str(final), env, deterministic=True)
    saved = load_checkpoint(final)["agent"]["actor"]
    for name, value in greedy.agent.actor.state_dict().items():
        torch.testing.assert_close(value, saved[name])
    action = greedy(obs, info)
    assert env.action_space.contains(action) and np.array_equal(action, greedy(obs, info))
    before_learning = load_checkpoint_policy(str(first), env, deterministic=True)
    assert not np.array_equal(action, before_learning(obs, info))  # the file asked for, not latest.pt

    rng_state = torch.get_rng_state()
    sampled = [load_checkpoint_policy(str(final), env, seed=3) for _ in range(2)]
    runs = [np.stack([policy(obs, info) for _ in range(4)]) for policy in sampled]
    np.testing.assert_array_equal(runs[0], runs[1])  # seeded: reproducible
    assert len({tuple(a) for a in runs[0]}) == 4 and not np.any(np.all(runs[0] == action, axis=1))  # sampled
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is untouched

    from_run_dir = make_behaviour_policy("checkpoint", env, RUN_TASK, checkpoint=str(tiny_run), deterministic=True)
    np.testing.assert_array_equal(from_run_dir(obs, info), action)  # a run directory means latest.pt
    missing = f"^no such run directory or checkpoint: {tiny_run}/missing; checkpoints of {tiny_run}: step_"
    with pytest.raises(FileNotFoundError, match=missing):
        load_checkpoint_policy(str(tiny_run / "missing"), env)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampled_checkpoint_actions_on_cuda_are_seeded_and_keep_the_cuda_rng(tiny_run):
    from embodied_rl.trainers.loading import load_checkpoint_policy

    env = tiny_env(tiny_run)
    obs, info = env.reset(seed=0)
    cuda_state = torch.cuda.get_rng_state()
    runs = []
    for _ in range(2):
        policy = load_checkpoint_policy(str(tiny_run), env, seed=3, device="cuda")
        runs.append(np.stack([policy(obs, info) for _ in range(4)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


def test_sac_tiers_of_another_run_or_expert_step_are_an_error(tiny_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    tiny = {"episodes": 1, "reference_episodes": 1, "progress": False}
    sac_run_tiers(tiny_run, tiers=["random", "expert"], **tiny)
    with pytest.raises(RecipeError, match=rf"tier random .* recipe.run_dir '{tiny_run}' \(requested '{other}'\);"):
        sac_run_tiers(other, tiers=["random"], **tiny)
    with pytest.raises(RecipeError, match=r"tier expert .* recipe.expert_step 300 \(requested 200\);"):
        sac_run_tiers(tiny_run, tiers=["expert"], expert_step=200, **tiny)
    rows, _ = sac_run_tiers(tiny_run, tiers=["random", "expert"], **tiny)
    assert [row["status"] for row in rows] == ["exists", "exists"]


def test_sac_run_tiers_of_a_run_on_dict_observations_are_a_clear_error(tiny_run, tmp_path):
    run_dir = tmp_path / "state_pixels"
    shutil.copytree(tiny_run, run_dir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("obs_mode: state", "obs_mode: state+pixels"))
    script = load_script("make_datasets")
    with pytest.raises(SystemExit, match=r"trained on Dict observations \(env.obs_mode=state\+pixels\)"):
        script.main(["mujoco", "--run", str(run_dir), "--episodes", "1", "--no-progress"])


def test_sac_run_tiers_follow_the_d4rl_recipe(tiny_run):
    rows, choice = sac_run_tiers(tiny_run, episodes=2, reference_episodes=1, progress=False)
    rows = {row["tier"]: row for row in rows}
    assert list(rows) == ["random", "medium", "medium-replay", "expert", "medium-expert"]
    scores = eval_returns_from_metrics(tiny_run)
    assert sorted(scores) == [100, 200, 300] and choice["scores"] == scores
    assert choice["final_step"] == 300 and choice["medium_step"] == pick_medium_step(scores)

    def recipe(tier):
        return open_dataset(rows[tier]["dataset_id"]).storage.metadata["embodied_rl"]["recipe"]

    assert recipe("expert")["checkpoint"].endswith("step_000000300.pt")
    assert recipe("medium")["checkpoint"].endswith(f"step_{choice['medium_step']:09d}.pt")
    assert rows["expert"]["dataset_id"] == "embodied_rl/mujoco-Hopper-v5/expert-v0"
    for tier in ("random", "medium", "expert"):
        assert rows[tier]["episodes"] == 2

    # medium-expert: D4RL's concatenation, the medium tier's episodes then as many of the expert checkpoint
    # (its resets continuing after the medium half's: seeds 2 and 3)
    both = load_trajectories(rows["medium-expert"]["dataset_id"])
    assert rows["medium-expert"]["episodes"] == len(both) == 4
    env = tiny_env(tiny_run)
    expert_policy = load_checkpoint_policy(recipe("expert")["checkpoint"], env, seed=0)
    expert_half = list(iterate_schedule(env, [(expert_policy, 2)], seed=2, progress=False))
    for mine, theirs in zip(both, [*load_trajectories(rows["medium"]["dataset_id"]), *expert_half]):
        np.testing.assert_array_equal(mine.actions, theirs.actions)
    assert recipe("medium-expert")["checkpoint"] == f"{recipe('medium')['checkpoint']} {recipe('expert')['checkpoint']}"

    # medium-replay: every transition of the medium checkpoint's buffer, cut into the trainer's episodes
    ckpt = torch.load(tiny_run / "checkpoints" / f"step_{choice['medium_step']:09d}.pt", weights_only=False)
    replay = load_trajectories(rows["medium-replay"]["dataset_id"])
    assert rows["medium-replay"]["steps"] == sum(len(t) for t in replay) == ckpt["buffer"]["size"]
    finished = [t for t in replay if t.terminations[-1] or len(t) == RUN_TIME_LIMIT]
    assert len(finished) == ckpt["trainer"]["episodes_done"] and len(replay) == len(finished) + RUN_ENVS
    assert all(len(t) <= RUN_TIME_LIMIT and t.terminations[:-1].sum() == 0 for t in replay)
    metadata = open_dataset(rows["medium-replay"]["dataset_id"]).storage.metadata
    assert metadata["ref_max_score"] == metadata["embodied_rl"]["reference"]["expert"]["return_mean"]


def test_expert_step_names_the_expert_checkpoint(tiny_run):
    rows, choice = sac_run_tiers(
        tiny_run,
        episodes=1,
        tiers=("medium", "expert"),
        reference_episodes=1,
        progress=False,
        expert_step=200,
        overwrite=True,
    )
    rows = {row["tier"]: row for row in rows}
    assert (choice["expert_step"], choice["final_step"]) == (200, 300)
    assert choice["medium_step"] == pick_medium_step(choice["scores"], expert_step=200) == 100
    metadata = open_dataset(rows["expert"]["dataset_id"]).storage.metadata["embodied_rl"]
    assert metadata["recipe"]["checkpoint"].endswith("step_000000200.pt") and metadata["recipe"]["expert_step"] == 200
    script = load_script("make_datasets")
    with pytest.raises(SystemExit, match="no checkpoint at expert step 250"):
        script.main(["mujoco", "--run", str(tiny_run), "--episodes", "1", "--no-progress", "--expert-step", "250"])


def copy_with_eval_returns(run_dir: Path, to: Path, returns: dict[int, float | None]) -> Path:
    """A copy of the run at `to` whose metrics.csv logs `returns[step]` as eval/return_mean at each step named
    there (None: that evaluation row is dropped); other rows are kept."""
    shutil.copytree(run_dir, to)
    lines = (to / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    column, step = header.index("eval/return_mean"), header.index("step")
    kept = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[column] != "" and int(cells[step]) in returns:
            if returns[int(cells[step])] is None:
                continue
            cells[column] = str(returns[int(cells[step])])
        kept.append(",".join(cells))
    (to / "metrics.csv").write_text("\n".join(kept) + "\n")
    return to


def test_best_expert_step_is_the_highest_scoring_checkpoint(tiny_run, tmp_path):
    # the middle checkpoint is the best, not the final one
    run_dir = copy_with_eval_returns(tiny_run, tmp_path / "rescored", {100: 5.0, 200: 9.0, 300: 1.0})
    script = load_script("make_datasets")
    args = ["mujoco", "--run", str(run_dir), "--episodes", "1", "--no-progress", "--reference-episodes", "1"]
    built = script.main([*args, "--tiers", "medium,expert", "--expert-step", "best", "--overwrite"])
    rows = {row["tier"]: row for row in built}
    recipe = open_dataset(rows["expert"]["dataset_id"]).storage.metadata["embodied_rl"]["recipe"]
    assert recipe["expert_step"] == 200 and recipe["medium_step"] == 100  # 5.0 >= 9.0 / 3
    assert recipe["checkpoint"].endswith("step_000000200.pt")
    with pytest.raises(SystemExit):  # argparse: neither a step nor `best`
        script.main([*args, "--expert-step", "highest"])


def test_expert_step_without_logged_evaluation_is_a_clear_error(tiny_run, tmp_path):
    run_dir = copy_with_eval_returns(tiny_run, tmp_path / "unlogged", {200: None})  # no evaluation row at 200
    script = load_script("make_datasets")
    args = ["mujoco", "--run", str(run_dir), "--episodes", "1", "--no-progress", "--expert-step", "200"]
    with pytest.raises(SystemExit, match="no eval/return_mean at the expert step 200"):
        script.main([*args, "--tiers", "medium", "--overwrite"])


def test_checkpoint_without_replay_buffer_is_a_clear_error(tiny_run, tmp_path):
    run_dir = tmp_path / "no_replay"
    shutil.copytree(tiny_run, run_dir)
    for path in (run_dir / "checkpoints").glob("step_*.pt"):
        ckpt = torch.load(path, weights_only=False)
        ckpt.pop("buffer")
        torch.save(ckpt, path)
    script = load_script("make_datasets")
    with pytest.raises(SystemExit, match="holds no replay buffer"):
        script.main(["mujoco", "--run", str(run_dir), "--episodes", "1", "--no-progress", "--medium-step", "200"])

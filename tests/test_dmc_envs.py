"""DeepMind Control Suite tasks through make_env ("dmc/<domain>-<task>"): names, options, seeding, distractors.

Pixel tests render tiny frames (32 px) a few times; DMC renders ~25 frames/s at 64 px under OSMesa with shadows.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

from embodied_rl.envs import DMC_TASKS, EnvConfig, UnknownTaskError, make_env, make_vector_env
from embodied_rl.envs.distractors import DistractorWrapper

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]


def rollout(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[list[np.ndarray], list[float]]:
    """Observations (reset one included) and rewards of ``actions`` from ``reset(seed=seed)``."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, *_ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
    return observations, rewards


def distractor_wrapper(env: gym.Env) -> DistractorWrapper:
    while not isinstance(env, DistractorWrapper):
        env = env.env
    return env


def random_actions(env: gym.Env, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *env.action_space.shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Task names
# ---------------------------------------------------------------------------------------------------------


def test_task_list_is_dm_control_suite_without_lqr():
    from dm_control import suite

    assert DMC_TASKS == tuple(f"{domain}-{task}" for domain, task in suite.ALL_TASKS if domain != "lqr")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("dmc/walker-walk", "dmc/walker-walk"),
        ("walker-walk", "dmc/walker-walk"),  # bare names resolve to their suite
        ("dmc/cup-catch", "dmc/ball_in_cup-catch"),  # Dreamer's / RePo's name
        ("dmc/cup_catch", "dmc/ball_in_cup-catch"),
        ("dmc/cartpole-swingup-sparse", "dmc/cartpole-swingup_sparse"),
        ("dmc/Cheetah-Run", "dmc/cheetah-run"),
    ],
)
def test_task_spellings_resolve_to_the_canonical_name(task, expected):
    assert EnvConfig(task=task).task == expected


def test_unknown_task_of_a_known_domain_lists_that_domains_tasks():
    with pytest.raises(UnknownTaskError, match="Unknown task 'dmc/walker-fly'") as caught:
        make_env("dmc/walker-fly")
    assert "domain 'walker' has the tasks: dmc/walker-stand, dmc/walker-walk, dmc/walker-run." in str(caught.value)


def test_unknown_domain_lists_every_domain():
    with pytest.raises(UnknownTaskError, match="DMC domains: acrobot, ball_in_cup, cartpole, cheetah") as caught:
        make_env("dmc/spaceship-fly")
    assert "lqr" not in str(caught.value) and "dmc/<domain>-<task>" in str(caught.value)


def test_importing_envs_does_not_import_dm_control():
    code = "import sys, embodied_rl.envs; print('dm_control' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_hydra_env_group_has_every_env_option():
    config = OmegaConf.load(ROOT / "configs" / "env" / "dmc.yaml")
    config.seed = 0
    assert EnvConfig(**OmegaConf.to_container(config)).task == "dmc/walker-walk"


# ---------------------------------------------------------------------------------------------------------
# Spaces, rewards, episodes
# ---------------------------------------------------------------------------------------------------------

CHECKED_CONFIGS = {
    "walker-state": dict(task="dmc/walker-walk"),
    "cheetah-pixels-repeat": dict(task="dmc/cheetah-run", obs_mode="pixels", image_size=SIZE, action_repeat=2),
    "cartpole-state+pixels-stack": dict(
        task="dmc/cartpole-swingup", obs_mode="state+pixels", image_size=SIZE, frame_stack=3
    ),
    "walker-pixels-distractors": dict(task="dmc/walker-walk", obs_mode="pixels", image_size=SIZE, distractors="test"),
}


@pytest.mark.parametrize("options", CHECKED_CONFIGS.values(), ids=CHECKED_CONFIGS.keys())
def test_env_checker_passes(options):
    env = make_env(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "differs from unwrapped", infinite Box bounds: expected
        check_env(env)
    env.close()


@pytest.mark.parametrize(
    ("task", "state_size", "camera"),
    [
        ("dmc/walker-walk", 24, "side"),
        ("dmc/cheetah-run", 17, "side"),
        ("dmc/cartpole-swingup", 5, "fixed"),
        ("dmc/finger-spin", 9, "cam0"),
        ("dmc/reacher-easy", 6, "fixed"),
        ("dmc/cup-catch", 8, "cam0"),
    ],
)
def test_state_is_the_flattened_observation_dict_and_pixels_come_from_camera_0(task, state_size, camera):
    env = make_env(task, obs_mode="state+pixels", image_size=SIZE, seed=0)
    obs, info = env.reset()
    base = env.unwrapped
    expected = np.concatenate([np.ravel(v) for v in base.sim.env.task.get_observation(base.sim.env.physics).values()])
    assert obs["state"].shape == (state_size,) and obs["state"].dtype == np.float32
    np.testing.assert_array_equal(obs["state"], expected.astype(np.float32))
    assert obs["pixels"].shape == (SIZE, SIZE, 3) and obs["pixels"].dtype == np.uint8
    assert base.camera == camera and info["success"] is False
    # our renderer shows exactly what dm_control's own renderer shows from camera 0
    np.testing.assert_array_equal(obs["pixels"], base.sim.env.physics.render(SIZE, SIZE, camera_id=0))
    env.close()


def test_rewards_are_dmcs_and_there_is_no_success_or_termination():
    env = make_env("dmc/walker-walk", seed=0)
    env.reset()
    reference = env.unwrapped.sim.env
    for action in random_actions(env, 5):
        obs, reward, terminated, truncated, info = env.step(action)
        assert isinstance(reward, float) and 0.0 <= reward <= 1.0
        assert reward == pytest.approx(reference.task.get_reward(reference.physics))
        assert (terminated, truncated, info["success"]) == (False, False, False)
        np.testing.assert_array_equal(info["state"], obs)


def test_action_repeat_sums_rewards_of_the_repeated_steps_and_shortens_the_episode():
    single = make_env("dmc/cartpole-swingup")
    repeated = make_env("dmc/cartpole-swingup", action_repeat=4)
    actions = random_actions(single, 6)
    states, rewards = rollout(single, np.repeat(actions, 4, axis=0), seed=2)
    repeated_states, repeated_rewards = rollout(repeated, actions, seed=2)
    np.testing.assert_allclose(repeated_rewards, np.add.reduceat(rewards, np.arange(0, 24, 4)), rtol=1e-12)
    np.testing.assert_array_equal(repeated_states[-1], states[-1])
    # 1000 control steps per episode in both: 1000 agent steps, or 250 with action_repeat=4
    assert EnvConfig(task="dmc/walker-walk", action_repeat=2).episode_steps == 500
    for env, length in ((single, 1000), (repeated, 250)):
        env.reset(seed=0)
        steps, truncated = 0, False
        while not truncated:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            assert not terminated
        assert steps == length


def test_time_limit_truncates_and_then_refuses_to_step():
    env = make_env("dmc/walker-walk", time_limit=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


def test_seeded_resets_reproduce_episodes_and_other_seeds_differ():
    env = make_env("dmc/reacher-easy", seed=5)  # random arm pose and target position per episode
    actions = random_actions(env, 4)
    first, first_rewards = rollout(env, actions, seed=5)
    again, again_rewards = rollout(env, actions, seed=5)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert first_rewards == again_rewards
    np.testing.assert_array_equal(make_env("dmc/reacher-easy", seed=5).reset()[0], first[0])
    assert not np.allclose(env.reset(seed=6)[0], first[0])
    assert not np.allclose(env.reset()[0], env.reset()[0])  # unseeded resets continue the stream


def test_actions_are_clipped_then_mapped_onto_the_action_spec():
    env = make_env("dmc/quadruped-walk", seed=0)  # actuator ranges up to 1.1
    env.reset()
    spec = env.unwrapped.sim.env.action_spec()
    assert spec.maximum.max() > 1.0
    env.step(np.full(env.action_space.shape, 5.0, np.float32))
    np.testing.assert_allclose(env.unwrapped.data.ctrl, spec.maximum)
    env.step(np.zeros(env.action_space.shape, np.float32))
    np.testing.assert_allclose(env.unwrapped.data.ctrl, (spec.maximum + spec.minimum) / 2)


# ---------------------------------------------------------------------------------------------------------
# Distractors, registration, vector envs
# ---------------------------------------------------------------------------------------------------------


def test_distractors_change_the_frames_but_not_the_states_or_rewards():
    runs = {}
    for split in (None, "train", "test"):
        env = make_env("dmc/walker-walk", obs_mode="state+pixels", image_size=SIZE, distractors=split, seed=3)
        runs[split] = rollout(env, random_actions(env, 3), seed=3)
        env.close()
    (clean, clean_rewards) = runs[None]
    for split in ("train", "test"):
        observations, rewards = runs[split]
        assert rewards == clean_rewards
        for obs, clean_obs in zip(observations, clean):
            np.testing.assert_array_equal(obs["state"], clean_obs["state"])
            assert np.abs(obs["pixels"].astype(int) - clean_obs["pixels"]).mean() > 20
    train, test = runs["train"][0][-1]["pixels"], runs["test"][0][-1]["pixels"]
    assert np.abs(train.astype(int) - test).mean() > 20


def test_background_replaces_the_sky_and_floor_but_keeps_the_robot():
    clean = make_env("dmc/walker-walk", obs_mode="pixels", image_size=SIZE, seed=0)
    distracted = make_env("dmc/walker-walk", obs_mode="pixels", image_size=SIZE, seed=0, distractors="train")
    wrapper = distractor_wrapper(distracted)
    assert isinstance(wrapper, DistractorWrapper) and wrapper.profile.name == "dmc"
    wrapper.kinds = ("background",)
    clean_frame, frame = clean.reset(seed=0)[0], distracted.reset(seed=0)[0]
    base = clean.unwrapped
    base._renderer.enable_segmentation_rendering()
    segmentation = base.render()  # (H, W, 2): objid, objtype
    base._renderer.disable_segmentation_rendering()
    robot = (segmentation[..., 1] == 5) & (segmentation[..., 0] != 0)  # geoms other than the floor (geom 0)
    assert robot.sum() > 10 and np.array_equal(frame[robot], clean_frame[robot])
    assert np.abs(frame[~robot].astype(int) - clean_frame[~robot]).mean() > 20


@pytest.mark.parametrize("task", ["dmc/walker-walk", "dmc/reacher-easy"])  # a side and a top-down camera
def test_distractor_bodies_are_in_view_and_only_plane_world_geoms_are_scenery(task):
    env = make_env(task, obs_mode="pixels", image_size=SIZE, distractors="test", distractor_kinds="bodies", seed=0)
    clean = make_env(task, obs_mode="pixels", image_size=SIZE, seed=0)
    actions = random_actions(env, 8)
    frames, _ = rollout(env, actions, seed=0)
    clean_frames, _ = rollout(clean, actions, seed=0)
    changed = [np.any(frame != clean_frame) for frame, clean_frame in zip(frames, clean_frames)]
    assert sum(changed) >= 6
    wrapper, model = distractor_wrapper(env), env.unwrapped.model
    scenery = {model.geom(i).name for i in np.flatnonzero(wrapper.scenery_geoms)}
    walls = {"wall_x", "wall_y", "wall_neg_x", "wall_neg_y"}
    assert scenery == ({"floor"} if task == "dmc/walker-walk" else {"ground", *walls})  # not reacher's target
    assert wrapper.profile.length_scale == pytest.approx(1.2 * model.stat.extent)


def test_registered_id_and_stored_spec_rebuild_the_env():
    env = gym.make("embodied_rl/dmc-walker-walk", obs_mode="pixels", image_size=SIZE, action_repeat=2)
    assert env.observation_space.shape == (SIZE, SIZE, 3)
    env = make_env("dmc/ball_in_cup-catch", action_repeat=2, seed=4)
    rebuilt = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert rebuilt.spec.kwargs == env.spec.kwargs
    np.testing.assert_array_equal(rebuilt.reset()[0], env.reset()[0])


def test_vector_env_gives_each_sub_env_its_own_seed():
    envs = make_vector_env({"task": "dmc/reacher-easy", "seed": 1}, num_envs=2)
    obs, _ = envs.reset()
    assert obs.shape == (2, 6) and not np.allclose(obs[0], obs[1])
    for i in range(2):
        np.testing.assert_array_equal(obs[i], make_env("dmc/reacher-easy", seed=2 + i).reset()[0])
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert reward.shape == (2,) and not info["success"].any()
    envs.close()

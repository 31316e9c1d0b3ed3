"""embodied_rl.envs: make_env options, wrappers, seeding, registration, vector envs, rendering backend.

Pixel tests render tiny frames (32 px) a few times: Meta-World renders ~20 frames/s under OSMesa.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

from embodied_rl.envs import (
    METAWORLD_TASKS,
    MUJOCO_TASKS,
    EnvConfig,
    RenderingBackendError,
    UnknownTaskError,
    env_id_for,
    make_env,
    make_vector_env,
    register_envs,
    rendering,
    scripted_policy,
    subenv_seeds,
)
from embodied_rl.envs.wrappers import ActionRepeat

SIZE = 32


def goal_and_object(obs: np.ndarray) -> np.ndarray:
    """Meta-World's first object position (state[4:7]) and goal position (state[-3:])."""
    return np.concatenate([obs[4:7], obs[-3:]])


# ---------------------------------------------------------------------------------------------------------
# Tasks and configs
# ---------------------------------------------------------------------------------------------------------


def test_task_lists_match_the_libraries():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert METAWORLD_TASKS == tuple(ALL_V3_ENVIRONMENTS)
    assert all(task in gym.registry for task in MUJOCO_TASKS)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("metaworld/drawer-opne-v3", "metaworld/drawer-open-v3"),
        ("mujoco/hopper-v5", "mujoco/Hopper-v5"),
        ("walker2d-v5", "mujoco/Walker2d-v5"),
        ("metaworld/Hopper-v5", "mujoco/Hopper-v5"),  # the name part is matched across suites
        ("mujoco/reach-v3", "metaworld/reach-v3"),
    ],
)
def test_unknown_task_is_a_value_error_naming_close_matches(task, expected):
    with pytest.raises(UnknownTaskError, match="Unknown task") as caught:
        make_env(task=task)
    assert isinstance(caught.value, ValueError)
    assert expected in str(caught.value)


def test_unknown_suite_lists_the_suites():
    with pytest.raises(UnknownTaskError, match="metaworld/<name>.*mujoco/<Name>-v5.*dmc/<domain>-<task>"):
        EnvConfig(task="atari/pong")


def test_bare_task_names_resolve_to_their_suite():
    assert EnvConfig(task="Hopper-v5").task == "mujoco/Hopper-v5"
    assert EnvConfig(task="reach-v3").task == "metaworld/reach-v3"


def test_config_from_dictconfig_with_interpolation_and_overrides():
    from omegaconf import OmegaConf

    env_cfg = {"task": "mujoco/Hopper-v5", "seed": "${seed}", "distractor_kinds": ["background"]}
    cfg = OmegaConf.create({"seed": 3, "env": env_cfg})
    env = make_env(cfg.env, time_limit=7)
    assert env.spec.kwargs["seed"] == 3 and env.spec.kwargs["time_limit"] == 7
    assert env.spec.kwargs["distractor_kinds"] == ["background"]
    with pytest.raises(TypeError, match="unknown env option.*'frameskip'"):
        make_env(cfg.env, frameskip=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"obs_mode": "rgb"}, "obs_mode"),
        ({"frame_stack": 0}, "frame_stack"),
        ({"distractors": "val"}, "distractors"),
        ({"distractor_kinds": ["background", "clouds"]}, r"unknown distractor kind\(s\) \['clouds'\]"),
        ({"seed": -1}, "seed must be a non-negative integer or None, got -1"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"time_limit": 300, "action_repeat": 2}, "exceeds Meta-World's episode length"),
    ],
)
def test_invalid_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(task="metaworld/reach-v3", **options)


def test_a_single_distractor_kind_is_one_kind_not_its_letters():
    from omegaconf import OmegaConf

    overrides = OmegaConf.from_dotlist(["distractor_kinds=background"])  # what Hydra gives for one name
    assert EnvConfig(**overrides).distractor_kinds == ["background"]
    assert EnvConfig(distractor_kinds=("lighting", "camera")).distractor_kinds == ["lighting", "camera"]


def test_default_time_limit_keeps_metaworld_within_500_simulator_steps():
    assert [EnvConfig(action_repeat=k).episode_steps for k in (1, 2, 3)] == [500, 250, 166]
    assert EnvConfig(task="mujoco/Hopper-v5", action_repeat=4).episode_steps == 250


# ---------------------------------------------------------------------------------------------------------
# Every wrapper configuration passes gymnasium's checker
# ---------------------------------------------------------------------------------------------------------

CHECKED_CONFIGS = {
    "metaworld-state": dict(task="metaworld/drawer-open-v3"),
    "metaworld-pixels": dict(task="metaworld/reach-v3", obs_mode="pixels", image_size=SIZE),
    "metaworld-repeat-stack": dict(task="metaworld/drawer-open-v3", action_repeat=2, frame_stack=2),
    "hopper-state": dict(task="mujoco/Hopper-v5"),
    "hopper-state+pixels-stack": dict(task="mujoco/Hopper-v5", obs_mode="state+pixels", image_size=SIZE, frame_stack=3),
    "hopper-pixels-repeat": dict(task="mujoco/Hopper-v5", obs_mode="pixels", image_size=SIZE, action_repeat=2),
    "humanoid-state": dict(task="mujoco/Humanoid-v5"),
}


@pytest.mark.parametrize("options", CHECKED_CONFIGS.values(), ids=CHECKED_CONFIGS.keys())
def test_env_checker_passes(options):
    env = make_env(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "differs from unwrapped", infinite Box bounds: expected
        check_env(env)
    env.close()


@pytest.mark.parametrize("task", METAWORLD_TASKS)
def test_every_metaworld_task_resets_reproducibly_and_steps(task):
    env = make_env(task=f"metaworld/{task}")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,) and obs.dtype == np.float32 and obs in env.observation_space
    assert np.any(obs[-3:] != 0), "the goal is observable"
    np.testing.assert_array_equal(env.reset(seed=0)[0], obs)
    assert not np.allclose(goal_and_object(env.reset(seed=1)[0]), goal_and_object(obs))
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    assert isinstance(info["success"], bool) and np.array_equal(info["state"], obs)


@pytest.mark.filterwarnings("ignore:Constant.*may be too high")
def test_metaworld_success_is_the_tasks_own_criterion():
    """drawer-open succeeds once the handle is within 3 cm of its target, not when the gripper reaches it."""
    env = make_env(task="metaworld/drawer-open-v3", seed=0)
    policy = scripted_policy("metaworld/drawer-open-v3")
    _, info = env.reset()
    flags = []
    for _ in range(150):
        _, _, _, _, info = env.step(policy(info["state"]))
        flags.append((info["success"], bool(info["obj_to_target"] <= 0.03), bool(info["near_object"])))
    assert all(success == opened for success, opened, _ in flags)
    assert any(success for success, _, _ in flags) and not flags[0][0]
    assert any(near and not success for success, _, near in flags)  # the gripper is at the handle before


# ---------------------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------------------


def test_metaworld_positions_are_random_per_episode_and_reproduce_from_the_seed():
    env = make_env(task="metaworld/reach-v3")
    first = goal_and_object(env.reset(seed=0)[0])
    next_episode = goal_and_object(env.reset()[0])
    assert np.array_equal(goal_and_object(env.reset(seed=0)[0]), first)
    assert not np.allclose(goal_and_object(env.reset(seed=1)[0]), first)
    assert not np.allclose(next_episode, first)
    seeded_by_config = make_env(task="metaworld/reach-v3", seed=0)
    assert np.array_equal(goal_and_object(seeded_by_config.reset()[0]), first)
    # the config seeds the first reset only: the next episodes continue its stream (as in a vector env)
    assert np.array_equal(goal_and_object(seeded_by_config.reset()[0]), next_episode)


def test_locomotion_reset_noise_reproduces_from_the_seed():
    env = make_env(task="mujoco/Hopper-v5")
    first = env.reset(seed=5)[0]
    assert np.array_equal(env.reset(seed=5)[0], first)
    assert not np.array_equal(env.reset(seed=6)[0], first)


# ---------------------------------------------------------------------------------------------------------
# Wrappers
# ---------------------------------------------------------------------------------------------------------


class ScriptedSteps(gym.Env):
    """A stub env: step t gives reward t, success at step ``success_at``, termination at ``terminate_at``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, success_at: int = -1, terminate_at: int = -1):
        self.success_at, self.terminate_at, self.t = success_at, terminate_at, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {"success": False}

    def step(self, action):
        self.t += 1
        obs = np.full(1, self.t, np.float32)
        return obs, float(self.t), self.t == self.terminate_at, False, {"success": self.t == self.success_at}


def test_action_repeat_sums_rewards_and_reports_any_success():
    env = ActionRepeat(ScriptedSteps(success_at=2), repeat=3)
    env.reset()
    obs, reward, terminated, _, info = env.step(np.zeros(1))
    assert (obs[0], reward, terminated, info["success"]) == (3, 1 + 2 + 3, False, True)
    obs, reward, _, _, info = env.step(np.zeros(1))
    assert (obs[0], reward, info["success"]) == (6, 4 + 5 + 6, False)


def test_action_repeat_stops_at_termination():
    env = ActionRepeat(ScriptedSteps(terminate_at=2), repeat=4)
    env.reset()
    obs, reward, terminated, _, _ = env.step(np.zeros(1))
    assert (obs[0], reward, terminated) == (2, 1 + 2, True)


def test_action_repeat_matches_repeated_steps_of_the_real_env():
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 3)).astype(np.float32)
    single = make_env(task="mujoco/Hopper-v5", seed=0)
    single.reset()
    steps = [single.step(action) for action in actions.repeat(3, axis=0)]
    repeated = make_env(task="mujoco/Hopper-v5", seed=0, action_repeat=3)
    repeated.reset()
    for k, action in enumerate(actions):
        obs, reward, *_ = repeated.step(action)
        assert reward == pytest.approx(sum(step[1] for step in steps[3 * k : 3 * k + 3]))
        np.testing.assert_array_equal(obs, steps[3 * k + 2][0])


def test_time_limit_refuses_to_step_after_termination():
    from embodied_rl.envs.wrappers import TimeLimit

    class EndsAtStepTwo(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            self.t = 0
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.zeros(1, np.float32), 0.0, self.t == 2, False, {}

    env = TimeLimit(EndsAtStepTwo(), max_steps=10)
    env.reset()
    assert [env.step(np.zeros(1, np.float32))[2] for _ in range(2)] == [False, True]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(1, np.float32))


def test_time_limit_truncates_and_then_refuses_to_step():
    env = make_env(task="mujoco/Hopper-v5", time_limit=5, seed=0)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(3, np.float32))
    env.reset()
    truncations = [env.step(np.zeros(3, np.float32))[3] for _ in range(5)]
    assert truncations == [False] * 4 + [True]
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(np.zeros(3, np.float32))
    env.reset()
    assert env.step(np.zeros(3, np.float32))[3] is False


def test_metaworld_episode_ends_at_500_steps_with_a_clear_error_after():
    env = make_env(task="metaworld/reach-v3", seed=0)
    env.reset()
    action = np.zeros(4, np.float32)
    truncations = [env.step(action)[3] for _ in range(500)]
    assert truncations.index(True) == 499
    with pytest.raises(gym.error.ResetNeeded):
        env.step(action)
    with pytest.raises(gym.error.ResetNeeded, match="500 steps"):  # even the bare base env hides Meta-World's
        env.unwrapped.step(action)


def test_frame_stack_concatenates_states_oldest_first():
    env = make_env(task="mujoco/Hopper-v5", frame_stack=3, seed=0)
    obs, info = env.reset()
    states = [info["state"]] * 3
    np.testing.assert_array_equal(obs, np.concatenate(states))
    for _ in range(4):
        obs, _, _, _, info = env.step(env.action_space.sample())
        states.append(info["state"])
        np.testing.assert_array_equal(obs, np.concatenate(states[-3:]))
    assert obs.shape == (3 * 11,) and env.observation_space.shape == (33,)


def test_frame_stack_puts_pixels_on_the_channel_axis():
    env = make_env(task="mujoco/Hopper-v5", obs_mode="pixels", image_size=SIZE, frame_stack=2, seed=0)
    obs, _ = env.reset()
    frames = [env.render()] * 2
    assert obs.shape == (SIZE, SIZE, 6) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, np.concatenate(frames, axis=-1))
    for _ in range(3):
        obs, *_ = env.step(np.ones(3, np.float32))
        frames.append(env.render())
        np.testing.assert_array_equal(obs, np.concatenate(frames[-2:], axis=-1))  # oldest first, newest last
    assert not np.array_equal(frames[-2], frames[-1]), "consecutive frames differ, so their order was tested"


def test_state_plus_pixels_is_a_dict_of_state_and_frame():
    env = make_env(task="mujoco/Hopper-v5", obs_mode="state+pixels", image_size=SIZE, seed=0)
    obs, info = env.reset()
    assert set(obs) == {"state", "pixels"} and obs["pixels"].shape == (SIZE, SIZE, 3)
    assert obs["state"].dtype == np.float32 and np.array_equal(obs["state"], info["state"])
    np.testing.assert_array_equal(obs["pixels"], env.render())


def test_humanoid_actions_are_rescaled_to_its_control_range():
    env = make_env(task="mujoco/Humanoid-v5", seed=0)
    env.reset()
    assert env.action_space.low.min() == -1 and env.action_space.dtype == np.float32
    env.step(np.ones(env.action_space.shape, np.float32))
    sim = env.unwrapped.sim
    np.testing.assert_allclose(env.unwrapped.data.ctrl, sim.action_space.high)
    assert sim.action_space.high.max() < 1


@pytest.mark.parametrize("task", ["mujoco/HalfCheetah-v5", "mujoco/Humanoid-v5"])  # Humanoid: rescaled actions
def test_locomotion_actions_are_clipped_before_the_control_cost(task):
    steps = []
    for value in (1.0, 3.0):
        env = make_env(task=task, seed=0)
        env.reset()
        steps.append(env.step(np.full(env.action_space.shape, value, np.float32))[:2])
    (obs_in, reward_in), (obs_out, reward_out) = steps
    np.testing.assert_array_equal(obs_in, obs_out)
    assert reward_in == reward_out


def test_locomotion_never_succeeds():
    env = make_env(task="mujoco/Walker2d-v5", seed=0)
    _, info = env.reset()
    assert info["success"] is False and env.step(env.action_space.sample())[4]["success"] is False


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "camera"),
    [("metaworld/reach-v3", None), ("metaworld/reach-v3", "corner2"), ("mujoco/Hopper-v5", None)],
)
def test_cameras_are_upright(task, camera):
    env = make_env(task=task, camera=camera)
    env.reset(seed=0)
    base = env.unwrapped
    camera_id = base.model.camera(base.camera).id
    up_axis = base.data.cam_xmat[camera_id].reshape(3, 3)[:, 1]
    assert up_axis[2] > 0.3, "the camera's up axis points up, so frames are not upside down"


def test_render_uses_the_configured_size_and_camera():
    env = make_env(task="metaworld/reach-v3", image_size=24, camera="topview", seed=0)
    env.reset()
    frame = env.render()
    assert frame.shape == (24, 24, 3) and frame.dtype == np.uint8 and frame.std() > 0
    assert env.unwrapped.camera == "topview" and env.unwrapped.image_size == 24
    with pytest.raises(ValueError, match="unknown camera 'top'.*corner4"):
        make_env(task="metaworld/reach-v3", camera="top")


def test_default_cameras_are_the_documented_views():
    """camera=null: Meta-World's corner4 (the TD-MPC view, upright) and locomotion's tracking camera."""
    assert make_env(task="metaworld/reach-v3").unwrapped.camera == "corner4"
    assert make_env(task="mujoco/Hopper-v5").unwrapped.camera == "track"


def test_shadows_can_be_switched_off():
    frames = []
    for shadows in (True, False):
        env = make_env(task="mujoco/Hopper-v5", image_size=SIZE, shadows=shadows, seed=0)
        env.reset()
        frames.append(env.render())
        env.close()
    assert not np.array_equal(*frames)


def test_distractors_wrap_the_base_env_and_change_the_pixels():
    options = dict(task="mujoco/Hopper-v5", obs_mode="pixels", image_size=SIZE, seed=0)
    plain, distracted = make_env(**options), make_env(**options, distractors="train")
    wrapper = distracted
    while type(wrapper).__name__ != "DistractorWrapper":
        wrapper = wrapper.env
    assert wrapper.env is distracted.unwrapped and wrapper.split == "train"
    assert not np.array_equal(plain.reset()[0], distracted.reset()[0])


def test_choose_backend_honours_mujoco_gl_then_prefers_egl_only_with_a_gpu(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    assert rendering.choose_backend() == "glfw"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setattr(rendering.platform, "system", lambda: "Linux")
    monkeypatch.setattr(rendering, "library_available", lambda backend: True)
    monkeypatch.setattr(rendering, "nvidia_gpu_visible", lambda: True)
    assert rendering.choose_backend() == "egl"
    monkeypatch.setattr(rendering, "nvidia_gpu_visible", lambda: False)
    assert rendering.choose_backend() == "osmesa"
    monkeypatch.setattr(rendering, "library_available", lambda backend: False)
    assert rendering.choose_backend() is None


def test_an_empty_mujoco_gl_counts_as_unset(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "")
    monkeypatch.delitem(sys.modules, "mujoco")  # as if mujoco were not imported yet (restored afterwards)
    monkeypatch.setattr(rendering, "choose_backend", lambda: "osmesa")
    assert rendering.configure_rendering_backend() == "osmesa"
    assert os.environ["MUJOCO_GL"] == "osmesa"


def test_distracted_frames_may_be_bigger_than_the_default_framebuffer():
    options = dict(task="mujoco/Hopper-v5", obs_mode="pixels", image_size=481, shadows=False, seed=0)
    env = make_env(**options, distractors="train", distractor_kinds="lighting")  # 481 > 480, the default
    assert env.reset()[0].shape == (481, 481, 3)
    env.close()


def test_a_failing_gl_context_is_one_clear_error(monkeypatch):
    import mujoco

    def no_context(*args, **kwargs):
        raise RuntimeError("Failed to create OSMesa GL context.")

    env = make_env(task="mujoco/Hopper-v5", seed=0)
    env.reset()
    monkeypatch.setattr(mujoco, "Renderer", no_context)
    with pytest.raises(RenderingBackendError, match="Failed to create OSMesa GL context.*libosmesa6") as err:
        env.render()
    assert "libegl1" in str(err.value)


def test_import_picks_a_backend_and_never_imports_torch_or_metaworld():
    code = (
        "import os, sys; import embodied_rl.envs; "
        "print(os.environ.get('MUJOCO_GL'), 'torch' in sys.modules, 'metaworld' in sys.modules)"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    backend, torch_imported, metaworld_imported = result.stdout.split()
    expected = "egl" if rendering.nvidia_gpu_visible() and rendering.library_available("egl") else "osmesa"
    assert (backend, torch_imported, metaworld_imported) == (expected, "False", "False")


# ---------------------------------------------------------------------------------------------------------
# Registration, specs, vector envs, scripted policies
# ---------------------------------------------------------------------------------------------------------


def test_registered_ids_build_the_wrapped_env():
    assert env_id_for("metaworld/drawer-open-v3") == "embodied_rl/metaworld-drawer-open-v3"
    count = len(gym.registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_envs()  # idempotent: no "overriding" warning, nothing added
    assert len(gym.registry) == count
    env = gym.make("embodied_rl/mujoco-Hopper-v5", obs_mode="pixels", image_size=SIZE, frame_stack=2)
    assert env.observation_space.shape == (SIZE, SIZE, 6)
    assert all(env_id_for(f"metaworld/{task}") in gym.registry for task in METAWORLD_TASKS)


@pytest.mark.parametrize("distractors", [None, "test"])
def test_stored_spec_rebuilds_the_same_env(distractors):
    env = make_env(task="metaworld/reach-v3", frame_stack=2, action_repeat=2, distractors=distractors, seed=4)
    rebuilt = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert rebuilt.spec.kwargs == env.spec.kwargs and rebuilt.observation_space == env.observation_space
    np.testing.assert_array_equal(rebuilt.reset()[0], env.reset()[0])


def test_vector_env_gives_each_sub_env_its_own_seed():
    envs = make_vector_env({"task": "metaworld/reach-v3", "seed": 1}, num_envs=2)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = envs.reset()
    assert obs.shape == (2, 39) and not np.allclose(goal_and_object(obs[0]), goal_and_object(obs[1]))
    for i in range(2):
        np.testing.assert_array_equal(obs[i], make_env(task="metaworld/reach-v3", seed=2 + i).reset()[0])
    envs.close()


def test_sub_env_seeds_of_different_runs_never_overlap_and_one_env_keeps_the_seed():
    assert subenv_seeds(0, 4) == [0, 1, 2, 3] and subenv_seeds(1, 4) == [4, 5, 6, 7]
    assert set(subenv_seeds(0, 4)).isdisjoint(subenv_seeds(1, 4))
    assert [subenv_seeds(seed, 1) for seed in (0, 1, 7)] == [[0], [1], [7]]
    assert subenv_seeds(None, 2) == [None, None]
    # with one env, a reset seeded with the list is the reset seeded with the int (trainer results unchanged)
    envs = make_vector_env({"task": "mujoco/Hopper-v5"}, num_envs=1)
    np.testing.assert_array_equal(envs.reset(seed=subenv_seeds(7, 1))[0], envs.reset(seed=7)[0])
    envs.close()


def test_async_vector_env_steps_and_autoresets():
    config = EnvConfig(task="mujoco/Hopper-v5", time_limit=3, seed=0)
    envs = make_vector_env(config, num_envs=2, asynchronous=True)
    envs.reset()
    for _ in range(3):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs.shape == (2, 11) and truncated.all() and "final_obs" in info
    envs.close()


@pytest.mark.filterwarnings("ignore:Constant.*may be too high")
def test_scripted_policy_solves_its_task_from_the_current_state():
    env = make_env(task="metaworld/drawer-open-v3", frame_stack=2, seed=0)
    policy = scripted_policy("metaworld/drawer-open-v3")
    obs, info = env.reset()
    with pytest.raises(ValueError, match="info\\['state'\\]"):
        policy(obs)  # a stacked observation is not the state the policy reads
    success = False
    for _ in range(200):
        action = policy(info["state"])
        assert action.dtype == np.float32 and np.abs(action).max() <= 1
        obs, _, _, _, info = env.step(action)
        success = success or info["success"]
    assert success
    with pytest.raises(ValueError, match="only for Meta-World"):
        scripted_policy("mujoco/Hopper-v5")


def test_frame_stack_with_action_repeat_stacks_agent_steps_not_simulator_steps():
    env = make_env(task="mujoco/Hopper-v5", frame_stack=2, action_repeat=3, seed=0)
    obs, info = env.reset()
    states = [info["state"]] * 2
    for _ in range(3):
        obs, _, _, _, info = env.step(np.full(3, 0.5, np.float32))
        states.append(info["state"])
        np.testing.assert_array_equal(obs, np.concatenate(states[-2:]))


def test_frame_stack_starts_afresh_at_every_reset():
    env = make_env(task="mujoco/Hopper-v5", frame_stack=3, seed=0)
    env.reset()
    for _ in range(4):
        env.step(np.ones(3, np.float32))
    obs, info = env.reset(seed=1)
    np.testing.assert_array_equal(obs, np.concatenate([info["state"]] * 3))  # nothing of the last episode


def test_locomotion_episodes_terminate_when_the_robot_falls():
    env = make_env(task="mujoco/Hopper-v5", seed=0)  # time limit 1000
    env.reset()
    terminated = truncated = False
    for _ in range(100):  # full torque: it falls within ~20 steps
        _, _, terminated, truncated, _ = env.step(np.ones(3, np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert not env.unwrapped.sim.is_healthy


def test_frame_stack_stacks_each_entry_of_state_and_pixels():
    env = make_env(task="mujoco/Hopper-v5", obs_mode="state+pixels", image_size=SIZE, frame_stack=2, seed=0)
    obs, info = env.reset()
    states, frames = [info["state"]] * 2, [env.render()] * 2
    for _ in range(2):
        obs, _, _, _, info = env.step(np.ones(3, np.float32))
        states.append(info["state"])
        frames.append(env.render())
        np.testing.assert_array_equal(obs["state"], np.concatenate(states[-2:]))
        np.testing.assert_array_equal(obs["pixels"], np.concatenate(frames[-2:], axis=-1))

"""make_env / make_vector_env: the caller's ``wrappers`` (outermost, in order, not an env option), the ready-made
`RewardFunction`, and the task as the first positional argument."""

from __future__ import annotations

import functools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodied_rl.envs import (
    EnvConfig,
    RewardFunction,
    UnknownTaskError,
    make_env,
    make_vector_env,
    to_env_config,
)
from embodied_rl.envs.wrappers import TimeLimit

HOPPER = "mujoco/Hopper-v5"
REACH = "metaworld/reach-v3"


class Tag(gym.Wrapper):
    """Appends its ``name`` to ``info["tags"]`` at every reset and step (module level: it pickles by reference)."""

    def __init__(self, env: gym.Env, name: str):
        super().__init__(env)
        self.name = name

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "tags": (*info.get("tags", ()), self.name)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "tags": (*info.get("tags", ()), self.name)}


class SpawnAsyncVectorEnv(gym.vector.AsyncVectorEnv):
    """Subprocesses started by spawn (macOS' default; forkserver is Linux's from Python 3.14), which pickles every
    env_fn and its wrappers; fork, Linux's default before 3.14, would pickle nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, context="spawn", **kwargs)


def seven(obs, action, next_obs, info) -> float:
    return 7.0


def progress_reward(obs, action, next_obs, info) -> float:
    """Depends on obs, action, next_obs and the env reward separately: swapping any of them changes the value."""
    return float(next_obs[0] - 2.0 * obs[0] + 0.5 * action[0] + 0.25 * info["env_reward"])


def tags_of(env: gym.Env) -> list[str]:
    """Names of the Tag wrappers around ``env``, outermost first."""
    names = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, Tag):
            names.append(env.name)
        env = env.env
    return names


def test_wrappers_are_applied_outermost_in_order_innermost_first():
    env = make_env(task=HOPPER, wrappers=[functools.partial(Tag, name="a"), functools.partial(Tag, name="b")])
    assert isinstance(env, Tag) and env.name == "b"
    assert isinstance(env.env, Tag) and env.env.name == "a"
    assert isinstance(env.env.env, TimeLimit)  # the package's own outermost wrapper sits inside them
    _, info = env.reset(seed=0)
    assert info["tags"] == ("a", "b")
    info = env.step(env.action_space.sample())[-1]
    assert info["tags"] == ("a", "b")


def test_reward_function_replaces_the_reward_the_caller_sees_and_keeps_the_env_reward():
    env = make_env(task=HOPPER, seed=0, wrappers=[functools.partial(RewardFunction, fn=progress_reward)])
    plain = make_env(task=HOPPER, seed=0)
    obs, _ = env.reset()
    plain_obs, _ = plain.reset()
    np.testing.assert_array_equal(obs, plain_obs)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, *env.action_space.shape)).astype(np.float32)
    for action in actions:
        next_obs, reward, *_, info = env.step(action)
        plain_next_obs, plain_reward, *_ = plain.step(action)
        assert reward == pytest.approx(progress_reward(plain_obs, action, plain_next_obs, {"env_reward": plain_reward}))
        assert reward != pytest.approx(plain_reward)
        assert info["env_reward"] == plain_reward
        plain_obs = plain_next_obs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "differs from unwrapped", infinite Box bounds: expected
        # the skipped checks rebuild the env from env.spec, which a wrapper without recorded arguments prevents
        check_env(env, skip_render_check=True, skip_close_check=True)


def test_wrappers_are_not_an_env_option():
    wrapped = make_env(task=REACH, seed=1, wrappers=[functools.partial(Tag, name="a")])
    plain = make_env(task=REACH, seed=1)
    assert "wrappers" not in wrapped.spec.kwargs and wrapped.spec.kwargs == plain.spec.kwargs
    # gymnasium records every wrapper around gym.make's env; the caller's is the last one
    assert wrapped.spec.additional_wrappers[:-1] == plain.spec.additional_wrappers
    assert wrapped.spec.additional_wrappers[-1].name == "Tag"
    rebuilt = gym.make(wrapped.spec.id, **wrapped.spec.kwargs)  # the env without the caller's wrappers
    assert rebuilt.spec.kwargs == plain.spec.kwargs and tags_of(rebuilt) == []
    with pytest.raises(TypeError, match="unknown env option"):
        to_env_config({"task": REACH, "wrappers": [Tag]})


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_vector_env_applies_the_wrappers_to_every_sub_env(asynchronous, monkeypatch):
    monkeypatch.setattr(gym.vector, "AsyncVectorEnv", SpawnAsyncVectorEnv)
    wrappers = (w for w in [functools.partial(Tag, name="a"), functools.partial(RewardFunction, fn=seven)])
    envs = make_vector_env(HOPPER, num_envs=2, asynchronous=asynchronous, seed=0, time_limit=2, wrappers=wrappers)
    assert isinstance(envs, gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv)
    _, info = envs.reset()
    assert list(info["tags"]) == [("a",), ("a",)]
    _, reward, _, truncated, info = envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(reward, [7.0, 7.0])
    assert info["_env_reward"].all() and list(info["tags"]) == [("a",), ("a",)] and not truncated.any()
    # the second step ends the episodes: SAME_STEP autoreset resets the sub-envs through the wrappers
    _, reward, _, truncated, info = envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(reward, [7.0, 7.0])
    assert truncated.all() and info["final_info"]["_env_reward"].all()
    assert list(info["final_info"]["tags"]) == [("a",), ("a",)] and list(info["tags"]) == [("a",), ("a",)]
    _, reward, *_ = envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(reward, [7.0, 7.0])
    if not asynchronous:
        assert [tags_of(env) for env in envs.envs] == [["a"], ["a"]]
    envs.close()


def test_task_is_the_first_positional_argument():
    positional, keyword = make_env(REACH, seed=3), make_env(task=REACH, seed=3)
    assert positional.spec.kwargs == keyword.spec.kwargs and positional.spec.id == keyword.spec.id
    assert positional.spec.kwargs["task"] == REACH
    np.testing.assert_array_equal(positional.reset()[0], keyword.reset()[0])
    assert make_env("reach-v3", time_limit=5).spec.kwargs == make_env(task=REACH, time_limit=5).spec.kwargs
    # a config object or dict as the first argument still works, and overrides still win
    assert make_env(EnvConfig(task=REACH), seed=3).spec.kwargs == keyword.spec.kwargs
    assert make_env({"task": REACH, "seed": 0}, seed=3).spec.kwargs == keyword.spec.kwargs
    vector = make_vector_env(REACH, num_envs=2, seed=1)
    by_dict = make_vector_env({"task": REACH, "seed": 1}, num_envs=2)
    np.testing.assert_array_equal(vector.reset()[0], by_dict.reset()[0])
    vector.close(), by_dict.close()


def test_task_given_twice_or_unknown_is_a_clear_error():
    with pytest.raises(TypeError, match="task given twice"):
        make_env(REACH, task="metaworld/push-v3")
    with pytest.raises(TypeError, match="task given twice"):
        make_vector_env(REACH, task="metaworld/push-v3")
    for make in (make_env, make_vector_env):
        with pytest.raises(UnknownTaskError, match="Did you mean: metaworld/reach-v3"):
            make("metaworld/reech-v3")


@pytest.mark.parametrize(
    "wrappers, message",
    [
        ([42], r"wrappers\[0\] is 42, not a callable"),
        ([Tag, "Tag"], r"wrappers\[1\] is 'Tag', not a callable"),
        (RewardFunction, r"put a single wrapper in a list"),
        ("Tag", r"must be a list of callables"),
        ([lambda env: None], r"wrappers\[0\] .* returned NoneType, not a gymnasium.Env"),
    ],
    ids=["not-callable", "a-string-in-the-list", "not-in-a-list", "a-string", "returns-no-env"],
)
@pytest.mark.parametrize("factory", ["make_env", "make_vector_env-async"])
def test_bad_wrappers_are_clear_type_errors(wrappers, message, factory):
    if factory == "make_env":
        with pytest.raises(TypeError, match=message):
            make_env(HOPPER, wrappers=wrappers)
    elif "returned" not in message:  # checked in this process, before any subprocess starts
        with pytest.raises(TypeError, match=message):
            make_vector_env(HOPPER, num_envs=2, asynchronous=True, wrappers=wrappers)

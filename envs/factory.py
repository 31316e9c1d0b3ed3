"""`make_env` and `make_vector_env`: the one way to build an env from an `EnvConfig`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gymnasium as gym

from .config import EnvConfig, to_env_config
from .registration import env_id_for
from .tasks import DMC, METAWORLD
from .wrappers import ActionRepeat, FrameStack, PixelObservation, TimeLimit

EnvWrapper = Callable[[gym.Env], gym.Env]


def make_env(
    cfg: str | EnvConfig | Mapping[str, Any] | None = None,
    *,
    wrappers: Iterable[EnvWrapper] = (),
    **overrides: Any,
) -> gym.Env:
    """The wrapped env for ``cfg``: a task name (like gym.make's id), an EnvConfig, a dict or a DictConfig, with
    ``overrides`` on top, e.g. ``make_env("metaworld/reach-v3")`` or
    ``make_env(task="mujoco/Hopper-v5", obs_mode="pixels")``.

    Built through ``gym.make`` on the registered id, so ``env.spec`` holds every option and Minari can rebuild
    the env from a dataset. ``render_mode`` may be given (only "rgb_array"; ``render()`` always works).

    ``wrappers``: callables ``env -> env`` (a wrapper class, ``functools.partial(SomeWrapper, arg=...)``)
    applied after ``gym.make``, in order, innermost first, so the last one is the env returned and the first
    one wraps the package's own `TimeLimit`, e.g. ``wrappers=[functools.partial(RewardFunction, fn=reward)]``
    to train on a learned or generated reward. They are not an env option: neither the `EnvConfig` nor
    ``env.spec.kwargs`` holds them (gymnasium lists each one in ``env.spec.additional_wrappers``).
    """
    wrappers = checked_wrappers(wrappers)
    render_mode = overrides.pop("render_mode", None)
    config = to_env_config(cfg, **overrides)
    extra = {} if render_mode is None else {"render_mode": render_mode}
    env = gym.make(env_id_for(config.task), **dataclasses.asdict(config), **extra)
    return apply_wrappers(env, wrappers)


def make_vector_env(
    cfg: str | EnvConfig | Mapping[str, Any] | None = None,
    num_envs: int = 1,
    asynchronous: bool = False,
    *,
    wrappers: Iterable[EnvWrapper] = (),
    **overrides: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of `make_env(cfg, wrappers=wrappers)`, seeded by `subenv_seeds` (fresh entropy if the
    seed is None); ``cfg`` as in `make_env` (``make_vector_env("mujoco/Hopper-v5", num_envs=8)``).

    Synchronous by default, subprocesses with ``asynchronous=True``. Autoreset is SAME_STEP: a finished
    sub-env is reset inside the step that ended it, its last observation in ``info["final_obs"]``. Every
    sub-env gets ``wrappers``; with ``asynchronous=True`` they go to the subprocesses through cloudpickle
    (module-level classes and functions, partials of them and lambdas all travel).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    wrappers = checked_wrappers(wrappers)
    config = to_env_config(cfg, **overrides)
    seeds = subenv_seeds(config.seed, num_envs)
    env_fns = [functools.partial(make_env, dataclasses.replace(config, seed=seed), wrappers=wrappers) for seed in seeds]
    vector_env_class = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    return vector_env_class(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def checked_wrappers(wrappers: Iterable[EnvWrapper]) -> tuple[EnvWrapper, ...]:
    """``wrappers`` as a tuple, each one callable; a TypeError naming the culprit otherwise."""
    if callable(wrappers) or isinstance(wrappers, (str, bytes, Mapping)) or not isinstance(wrappers, Iterable):
        raise TypeError(
            f"wrappers must be a list of callables env -> env (wrapper classes or functools.partial of them), "
            f"got {wrappers!r}; put a single wrapper in a list: wrappers=[{getattr(wrappers, '__name__', '...')}]"
        )
    wrappers = tuple(wrappers)
    for i, wrapper in enumerate(wrappers):
        if not callable(wrapper):
            raise TypeError(
                f"wrappers[{i}] is {wrapper!r}, not a callable env -> env (a wrapper class, or "
                f"functools.partial(SomeWrapper, arg=...)); pass the wrapper itself, not an instance"
            )
    return wrappers


def apply_wrappers(env: gym.Env, wrappers: Iterable[EnvWrapper]) -> gym.Env:
    """``env`` wrapped by each of ``wrappers`` in order (innermost first); each must return a gymnasium Env."""
    for i, wrapper in enumerate(wrappers):
        wrapped = wrapper(env)
        if not isinstance(wrapped, gym.Env):
            env.close()
            raise TypeError(
                f"wrappers[{i}] ({getattr(wrapper, '__name__', wrapper)!r}) returned {type(wrapped).__name__}, "
                f"not a gymnasium.Env; a wrapper takes the env and returns the wrapped env"
            )
        env = wrapped
    return env


def subenv_seeds(seed: int | None, num_envs: int) -> list[int | None]:
    """Seeds of ``num_envs`` sub-envs for the run seed ``seed``: sub-env ``i`` gets ``seed * num_envs + i``.

    Runs with different seeds (and the same ``num_envs``) never share a sub-env seed, and a single env keeps
    ``seed`` itself. None gives None for every sub-env (fresh entropy). Pass the list to ``envs.reset(seed=...)``:
    gymnasium's own rule for an int seed, ``seed + i``, makes sub-env 1 of seed 0 equal sub-env 0 of seed 1.
    """
    if seed is None:
        return [None] * num_envs
    return [seed * num_envs + i for i in range(num_envs)]


def build_env(config: EnvConfig) -> gym.Env:
    """Base env, then (innermost first) distractors, action repeat, pixels, frame stack, time limit."""
    env = _base_env(config)
    if config.distractors is not None:
        from .distractors import DistractorWrapper  # another module; imported only when asked for

        env = DistractorWrapper(env, config.distractors, list(config.distractor_kinds), config.seed)
    if config.action_repeat > 1:
        env = ActionRepeat(env, config.action_repeat)
    if config.obs_mode != "state":
        env = PixelObservation(env, config.image_size, keep_state=config.obs_mode == "state+pixels")
    if config.frame_stack > 1:
        env = FrameStack(env, config.frame_stack)
    return TimeLimit(env, config.episode_steps)


def _base_env(config: EnvConfig) -> gym.Env:
    # Suite modules are imported here so that importing embodied_rl.envs stays cheap (metaworld takes ~0.5 s).
    if config.suite == METAWORLD:
        from .metaworld_env import MetaWorldEnv as suite_env
    elif config.suite == DMC:
        from .dmc_env import DMCEnv as suite_env  # dm_control's import takes ~1 s
    else:
        from .locomotion_env import LocomotionEnv as suite_env
    return suite_env(config.task_name, config.camera, config.image_size, config.shadows, config.seed)


def create_registered_env(render_mode: str | None = None, **options: Any) -> gym.Env:
    """Entry point of the registered ids: ``gym.make("embodied_rl/mujoco-Hopper-v5", obs_mode=...)``."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode {render_mode!r} is not supported; render() always gives an rgb_array")
    return build_env(to_env_config(None, **options))

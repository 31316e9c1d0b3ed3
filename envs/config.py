"""`EnvConfig`: every env option (the Hydra keys under ``env:``), and turning user input into one."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .tasks import DEFAULT_HORIZON, METAWORLD, canonical_task

OBS_MODES = ("state", "pixels", "state+pixels")
DISTRACTOR_SPLITS = ("train", "test")
DISTRACTOR_KINDS = ("background", "texture", "bodies", "lighting", "camera")
DEFAULT_DISTRACTOR_KINDS = ("background", "texture", "bodies", "lighting")


@dataclass
class EnvConfig:
    """One environment: task, observations and wrappers. See docs/envs.md for every field."""

    task: str = "metaworld/drawer-open-v3"  # "metaworld/<task>-v3" | "mujoco/<Name>-v5" | "dmc/<domain>-<task>"
    obs_mode: str = "state"  # "state" | "pixels" | "state+pixels"
    image_size: int = 64  # square frames, pixels
    camera: str | None = None  # None: the suite default (Meta-World "corner4", locomotion "track", DMC camera 0)
    action_repeat: int = 1  # simulator steps per agent step (RePo / Dreamer use 2 on DMC; set it there)
    frame_stack: int = 1  # observations stacked along the last axis
    time_limit: int | None = None  # agent steps per episode; None: 500 (Meta-World) or 1000 (others), / action_repeat
    distractors: str | None = None  # None | "train" | "test": RePo's visual distractors in rendered frames
    distractor_kinds: list[str] = field(default_factory=lambda: list(DEFAULT_DISTRACTOR_KINDS))  # or one name
    seed: int | None = None  # seeds the first reset() (and the distractors); None: fresh entropy
    shadows: bool = True  # shadows and reflections; False renders 3.5-4x (Meta-World) to 5-6x (Hopper) faster on OSMesa

    def __post_init__(self) -> None:
        self.task = canonical_task(self.task)
        self.distractor_kinds = _distractor_kinds(self.distractor_kinds)
        if self.seed is not None:
            self.seed = _non_negative_int("seed", self.seed)
        if not isinstance(self.shadows, bool):  # `shadows=no` would count as true
            raise ValueError(f"shadows must be true or false, got {self.shadows!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.distractors not in (None, *DISTRACTOR_SPLITS):
            raise ValueError(f"distractors must be None, 'train' or 'test', got {self.distractors!r}")
        self.image_size = _positive_int("image_size", self.image_size)
        self.action_repeat = _positive_int("action_repeat", self.action_repeat)
        self.frame_stack = _positive_int("frame_stack", self.frame_stack)
        if self.time_limit is not None:
            self.time_limit = _positive_int("time_limit", self.time_limit)
        horizon = DEFAULT_HORIZON[METAWORLD]
        if self.suite == METAWORLD and self.episode_steps * self.action_repeat > horizon:
            raise ValueError(
                f"time_limit * action_repeat = {self.episode_steps * self.action_repeat} simulator steps "
                f"exceeds Meta-World's episode length ({horizon}); lower time_limit or action_repeat."
            )

    @property
    def suite(self) -> str:
        return self.task.split("/", 1)[0]

    @property
    def task_name(self) -> str:
        return self.task.split("/", 1)[1]

    @property
    def episode_steps(self) -> int:
        """Agent steps per episode: ``time_limit``, or the suite's horizon divided by ``action_repeat``."""
        return self.time_limit or max(1, DEFAULT_HORIZON[self.suite] // self.action_repeat)


def _distractor_kinds(kinds: Any) -> list[str]:
    """``kinds`` as a list: a single name (what ``env.distractor_kinds=background`` gives) is one kind, None
    the defaults."""
    if kinds is None:
        return list(DEFAULT_DISTRACTOR_KINDS)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [kind for kind in kinds if kind not in DISTRACTOR_KINDS]
    if unknown:
        raise ValueError(
            f"unknown distractor kind(s) {unknown}; distractor_kinds must be a subset of {DISTRACTOR_KINDS}"
        )
    return kinds


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
    return int(value)


def to_env_config(cfg: str | EnvConfig | Mapping[str, Any] | None = None, **overrides: Any) -> EnvConfig:
    """An `EnvConfig` from an EnvConfig, a dict, an OmegaConf DictConfig or None, plus ``overrides``.

    A string is the task, as gym.make's id: ``to_env_config("metaworld/reach-v3", seed=0)`` is
    ``to_env_config(task="metaworld/reach-v3", seed=0)`` (giving ``task=`` as well is a TypeError).
    """
    if isinstance(cfg, str):
        if "task" in overrides:
            raise TypeError(f"task given twice: as the first argument {cfg!r} and as task={overrides['task']!r}")
        values = {"task": cfg}
    elif isinstance(cfg, EnvConfig):
        values = dataclasses.asdict(cfg)
    elif cfg is None:
        values = {}
    elif isinstance(cfg, Mapping):
        values = _plain_mapping(cfg)
    else:
        raise TypeError(f"env config must be a task name, an EnvConfig, a mapping or None, got {type(cfg).__name__}")
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown env option(s) {unknown}; EnvConfig fields are {sorted(known)}")
    return EnvConfig(**values)


def _plain_mapping(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of ``cfg``; OmegaConf configs are resolved (interpolations like ``${seed}``)."""
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return dict(OmegaConf.to_container(cfg, resolve=True))
    return dict(cfg)

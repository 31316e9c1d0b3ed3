"""Locomotion behaviours for Text2Reward, each with its instruction and a success criterion stated in code.

Meta-World judges success with its own flag; gymnasium's locomotion envs have none (their ``info["success"]`` is
always False). Text2Reward's locomotion tasks (moving forward, flips) were judged by people in the paper; here each
behaviour states a criterion on the abstraction's attributes, measured from the episode's first state, so that a
run is judged the same way whichever reward it trained on (generated or the env's own). The criteria are ours.

    behaviour = BEHAVIOURS["hopper-forward"]
    env = make_env("mujoco/Hopper-v5", wrappers=[functools.partial(BehaviourSuccess, behaviour=behaviour)])
    # info["success"] is True at every step at which the criterion holds

Angles: the planar robots' root hinge turns about +y, so a growing `torso_angle` pitches the torso forward (its
top towards +x): a front flip adds 2 pi, a back flip subtracts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from embodied_rl.rewards.text2reward.abstraction import abstraction_for
from embodied_rl.rewards.text2reward.snapshot import take_snapshot

Snapshot = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Behaviour:
    """A behaviour of one locomotion robot: the instruction given to the LLM and a success criterion on the
    episode's first snapshot and the current one."""

    name: str
    task: str  # "mujoco/<Name>-v5"
    instruction: str
    criterion: str  # the criterion in words (docs, results)
    succeeded: Callable[[Snapshot, Snapshot], bool]


def _travelled(start: Snapshot, now: Snapshot) -> float:
    return float(now["torso_x"] - start["torso_x"])


def _turned(start: Snapshot, now: Snapshot) -> float:
    return float(now["torso_angle"] - start["torso_angle"])


def forward(name: str, task: str, robot: str, metres: float) -> Behaviour:
    return Behaviour(
        name,
        task,
        f"Make the {robot} move forward (along +x) as fast as it can without falling over.",
        f"torso at least {metres:g} m ahead of where the episode started",
        lambda start, now: _travelled(start, now) >= metres,
    )


BEHAVIOURS: dict[str, Behaviour] = {
    b.name: b
    for b in (
        forward("hopper-forward", "mujoco/Hopper-v5", "hopper", 5.0),
        forward("walker2d-forward", "mujoco/Walker2d-v5", "two-legged walker", 5.0),
        forward("halfcheetah-forward", "mujoco/HalfCheetah-v5", "half cheetah", 20.0),
        forward("ant-forward", "mujoco/Ant-v5", "four-legged ant", 5.0),
        Behaviour(
            "halfcheetah-backward",
            "mujoco/HalfCheetah-v5",
            "Make the half cheetah run backwards (along -x) as fast as it can.",
            "torso at least 10 m behind where the episode started",
            lambda start, now: _travelled(start, now) <= -10.0,
        ),
        Behaviour(
            "hopper-frontflip",
            "mujoco/Hopper-v5",
            "Make the hopper do a front flip: rotate its torso forward through a full turn.",
            "torso turned forward by a full turn (2 pi rad) since the episode started",
            lambda start, now: _turned(start, now) >= 2 * math.pi,
        ),
        Behaviour(
            "hopper-backflip",
            "mujoco/Hopper-v5",
            "Make the hopper do a back flip: rotate its torso backward through a full turn.",
            "torso turned backward by a full turn (2 pi rad) since the episode started",
            lambda start, now: _turned(start, now) <= -2 * math.pi,
        ),
    )
}


def behaviour_named(name: str, task: str | None = None) -> Behaviour:
    """The behaviour called `name`; a ValueError listing the known ones (for `task`, if given) otherwise, or when
    it belongs to another task."""
    known = [b.name for b in BEHAVIOURS.values() if task is None or b.task == task]
    if name not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {name!r}; known{' for ' + task if task else ''}: {', '.join(known)}")
    behaviour = BEHAVIOURS[name]
    if task is not None and behaviour.task != task:
        raise ValueError(f"behaviour {name!r} is for {behaviour.task}, not {task}; for {task}: {', '.join(known)}")
    return behaviour


class BehaviourSuccess(gym.Wrapper):
    """``info["success"]``: whether the behaviour's criterion holds at this step, measured from the state the
    episode started in. The trainers and evaluation count an episode as a success if any step succeeded."""

    def __init__(self, env: gym.Env, behaviour: Behaviour):
        super().__init__(env)
        self.behaviour = behaviour
        self.abstraction = abstraction_for(behaviour.task)
        self.start: dict[str, np.ndarray] | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.start = take_snapshot(self.env, self.abstraction)
        info["success"] = False
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["success"] = bool(self.behaviour.succeeded(self.start, take_snapshot(self.env, self.abstraction)))
        return obs, reward, terminated, truncated, info

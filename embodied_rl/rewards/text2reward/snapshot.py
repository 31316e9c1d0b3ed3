"""Snapshots: the attributes of an `Abstraction` read from a live env, as plain data.

Generated reward code never sees an env. After each step the trainer takes a snapshot (a dict of float64 numpy
arrays, exactly the abstraction's attributes with their shapes; scalars have shape ``()``), sends it wherever the
code runs and wraps it there in a `ReadOnlySnapshot`, which is what ``compute_dense_reward(obs, action)`` gets.

    abstraction = abstraction_for("metaworld/drawer-open-v3")
    env = make_env("metaworld/drawer-open-v3", wrappers=[functools.partial(SnapshotInfo, abstraction=abstraction)])
    obs, reward, terminated, truncated, info = env.step(action)
    reward = compute_dense_reward(ReadOnlySnapshot(info["snapshot"]), action)

Vector envs (`make_vector_env`): give every sub-env the same `SnapshotInfo` wrapper and read the step's snapshots
with `snapshots_from_info(info, num_envs)`; it takes a finished sub-env's snapshot from ``info["final_info"]``
(the state its last step reached, not the reset that followed). `take_snapshots` reads the current state of every
sub-env instead: directly for a list of envs or a `SyncVectorEnv`, through ``call`` for an `AsyncVectorEnv`
(whose sub-envs then need `SnapshotInfo`).

Meta-World values come from the simulator the same way Meta-World builds its observation (hand, gripper, object
slots, goal), so they equal the observation's entries (object orientations turned into (w, x, y, z)).
Locomotion values come from the MuJoCo state (qpos, qvel) of the gymnasium env.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from embodied_rl.envs.wrappers import ActionRepeat

from .abstraction import LOCOMOTION_FAMILY, METAWORLD_FAMILY, METAWORLD_OBJECTS, ROBOTS, Abstraction

SNAPSHOT_KEY = "snapshot"  # the info key `SnapshotInfo` fills


def take_snapshot(env: gym.Env, abstraction: Abstraction) -> dict[str, np.ndarray]:
    """The abstraction's attributes read from ``env``'s current state: fresh float64 arrays, nothing else.

    ``env`` is an env from `make_env` (any wrappers) for the abstraction's task; a ValueError for another task.
    """
    base = env.unwrapped
    task_name = abstraction.task.rpartition("/")[2]
    if getattr(base, "task", None) != task_name:
        raise ValueError(
            f"the abstraction is for {abstraction.task!r} but the env runs {getattr(base, 'task', type(base))!r}"
        )
    if abstraction.family == METAWORLD_FAMILY:
        values = _metaworld_values(base.sim, task_name)
    elif abstraction.family == LOCOMOTION_FAMILY:
        values = _locomotion_values(base.sim, task_name, _steps_per_action(env))
    else:
        raise ValueError(f"unknown abstraction family {abstraction.family!r}")
    snapshot = {name: np.array(values[name], dtype=np.float64) for name in abstraction.attributes}
    for name, spec in abstraction.attributes.items():
        if snapshot[name].shape != spec.shape:
            raise RuntimeError(f"snapshot attribute {name} has shape {snapshot[name].shape}, not {spec.shape}")
    return snapshot


def _metaworld_values(sawyer: Any, task_name: str) -> dict[str, Any]:
    """Meta-World's current 18-d observation part (hand 3, gripper 1, object 3 + 4, second object 3 + 4) and goal."""
    current = np.asarray(sawyer._get_curr_obs_combined_no_goal(), dtype=np.float64)
    quaternion = current[7:11]
    if METAWORLD_OBJECTS[task_name].quaternion == "xyzw":
        quaternion = quaternion[[3, 0, 1, 2]]
    return {
        "ee_position": current[0:3],
        "gripper_openness": current[3],
        "object_position": current[4:7],
        "object_quaternion": quaternion,
        "second_object_position": current[11:14],
        "goal_position": sawyer._get_pos_goal(),
    }


def _locomotion_values(sim: Any, task_name: str, steps_per_action: int) -> dict[str, Any]:
    """Torso, root and joint quantities of a gymnasium MuJoCo robot from its qpos and qvel."""
    model, qpos, qvel = sim.model, sim.data.qpos, sim.data.qvel
    # From qpos, not the torso body's xpos: after mj_step the body poses still belong to the previous substep.
    # A planar robot's root slide joint z moves the torso from its model height, counted from the joint's qpos0.
    height = qpos[1] - model.qpos0[1] + model.body("torso").pos[2] if ROBOTS[task_name].planar else qpos[2]
    values = {
        "torso_x": qpos[0],
        "torso_height": height,
        "forward_velocity": qvel[0],
        "dt": sim.dt * steps_per_action,
    }
    if ROBOTS[task_name].planar:  # root joints: slide x, slide z, hinge y
        values |= {
            "vertical_velocity": qvel[1],
            "torso_angle": qpos[2],
            "angular_velocity": qvel[2],
            "joint_positions": qpos[3:],
            "joint_velocities": qvel[3:],
        }
    else:  # a free root joint: qpos position 3 + quaternion 4, qvel linear 3 (world) + angular 3 (body frame)
        values |= {
            "torso_y": qpos[1],
            "lateral_velocity": qvel[1],
            "vertical_velocity": qvel[2],
            "torso_quaternion": qpos[3:7],
            "angular_velocity": qvel[3:6],
            "joint_positions": qpos[7:],
            "joint_velocities": qvel[6:],
        }
    return values


def _steps_per_action(env: gym.Env) -> int:
    """How many simulator steps one ``env.step`` takes (the product of the `ActionRepeat` wrappers' repeats)."""
    steps = 1
    while isinstance(env, gym.Wrapper):
        if isinstance(env, ActionRepeat):
            steps *= env.repeat
        env = env.env
    return steps


class SnapshotInfo(gym.Wrapper):
    """Put `take_snapshot` of the state reached into ``info["snapshot"]`` after every reset and step.

    Pass it to the factory: ``make_vector_env(task, n, wrappers=[functools.partial(SnapshotInfo,
    abstraction=abstraction)])``; `current_snapshot()` answers ``vector_env.call("current_snapshot")``.
    """

    def __init__(self, env: gym.Env, abstraction: Abstraction):
        super().__init__(env)
        self.abstraction = abstraction

    def current_snapshot(self) -> dict[str, np.ndarray]:
        return take_snapshot(self.env, self.abstraction)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info[SNAPSHOT_KEY] = self.current_snapshot()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info[SNAPSHOT_KEY] = self.current_snapshot()
        return obs, reward, terminated, truncated, info


def take_snapshots(
    vector_env_or_envs: gym.vector.VectorEnv | Iterable[gym.Env], abstraction: Abstraction
) -> list[dict[str, np.ndarray]]:
    """One snapshot of the current state per sub-env, in order.

    A list of envs or a `SyncVectorEnv` is read directly; any other vector env (`AsyncVectorEnv`) through
    ``call("current_snapshot")``, so its sub-envs must be wrapped in `SnapshotInfo` for ``abstraction``'s task.
    After a step that ended an episode a sub-env has already been reset: use `snapshots_from_info` for the state
    each step reached.
    """
    if isinstance(vector_env_or_envs, gym.vector.SyncVectorEnv):
        return [take_snapshot(env, abstraction) for env in vector_env_or_envs.envs]
    if not isinstance(vector_env_or_envs, gym.vector.VectorEnv):
        return [take_snapshot(env, abstraction) for env in vector_env_or_envs]
    if not all(vector_env_or_envs.call("has_wrapper_attr", "current_snapshot")):  # asked first: a failed call
        raise ValueError(  # would shut the workers down
            "an asynchronous vector env's sub-envs must be wrapped in SnapshotInfo to be snapshotted: "
            "make_vector_env(..., wrappers=[functools.partial(SnapshotInfo, abstraction=abstraction)])"
        )
    snapshots = list(vector_env_or_envs.call("current_snapshot"))
    for snapshot in snapshots:
        if set(snapshot) != set(abstraction.attributes):
            raise ValueError(
                f"the sub-envs' SnapshotInfo gives {sorted(snapshot)}, not the attributes of {abstraction.task!r}"
            )
    return snapshots


def snapshots_from_info(info: Mapping[str, Any], num_envs: int) -> list[dict[str, np.ndarray]]:
    """Per-sub-env snapshots of the states a vector env's step (or reset) reached, from its batched ``info``.

    Needs `SnapshotInfo` on every sub-env. A sub-env whose episode ended in this step (and was reset within it,
    gymnasium's SAME_STEP autoreset) gives the snapshot in ``info["final_info"]``.
    """
    final_info = info.get("final_info", {})
    current, final = info.get(SNAPSHOT_KEY), final_info.get(SNAPSHOT_KEY)
    current_mask = info.get(f"_{SNAPSHOT_KEY}", np.zeros(num_envs, bool))
    final_mask = final_info.get(f"_{SNAPSHOT_KEY}", np.zeros(num_envs, bool))
    snapshots = []
    for i in range(num_envs):
        if final_mask[i]:
            batch = final
        elif current_mask[i]:
            batch = current
        else:
            raise ValueError(f"info holds no snapshot of sub-env {i}: wrap every sub-env in SnapshotInfo")
        # gymnasium batches a dict per key and adds a "_<key>" mask beside each one
        snapshots.append(
            {name: np.array(values[i], dtype=np.float64) for name, values in batch.items() if not name.startswith("_")}
        )
    return snapshots


class ReadOnlySnapshot:
    """Attribute access to a snapshot's arrays (``obs.ee_position``), as read-only float64 copies.

    An unknown name raises AttributeError listing the available ones; attributes cannot be set or deleted.
    Holds only the copied arrays, never an env, and pickles as them.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        frozen = {}
        for name, value in values.items():
            array = np.array(value, dtype=np.float64)  # always a copy
            array.flags.writeable = False
            frozen[str(name)] = array
        object.__setattr__(self, "_values", types.MappingProxyType(frozen))

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("__") or name == "_values":
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"obs has no attribute {name!r}; available: {', '.join(self._values)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"obs is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"obs is read-only: cannot delete {name!r}")

    def __dir__(self) -> list[str]:
        return list(self._values)

    def __reduce__(self):
        return ReadOnlySnapshot, ({name: np.array(value) for name, value in self._values.items()},)

    def __repr__(self) -> str:
        return f"ReadOnlySnapshot({', '.join(self._values)})"

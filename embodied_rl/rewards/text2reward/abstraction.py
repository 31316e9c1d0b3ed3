"""The environment abstraction of Text2Reward (Xie et al., ICLR 2024): a short Pythonic description of what generated
reward code may read, per task.

`abstraction_for(task)` gives an `Abstraction`: its ``text`` goes into the prompt (a class-like listing of the
attributes with shapes, units and meanings, the action's meaning and the task's goal), its ``attributes`` are exactly
the names the generated ``compute_dense_reward(obs, action)`` may read from ``obs``. `snapshot.take_snapshot` reads
those attributes from a live env each step. Supported: the 50 Meta-World v3 tasks and the gymnasium MuJoCo robots
Hopper, Walker2d, HalfCheetah and Ant (v5).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from embodied_rl.envs.task_descriptions import goal_text
from embodied_rl.envs.tasks import METAWORLD, METAWORLD_TASKS, MUJOCO, UnknownTaskError, resolve_task

METAWORLD_FAMILY = "metaworld"
LOCOMOTION_FAMILY = "locomotion"


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of ``obs``: its array shape (``()`` for a scalar) and what it means, with units."""

    shape: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Abstraction:
    """What the prompt shows about a task (``text``) and what generated code may read (``attributes``, in order).

    ``family`` is "metaworld" or "locomotion"; ``task`` the full task name, e.g. "metaworld/drawer-open-v3".
    """

    family: str
    task: str
    text: str
    attributes: Mapping[str, AttributeSpec]


class UnsupportedTaskError(UnknownTaskError):
    """A known task that has no abstraction (e.g. mujoco/Humanoid-v5)."""


# ---------------------------------------------------------------- Meta-World


class MetaWorldObjects(NamedTuple):
    """What the observation's object slots hold in one Meta-World task.

    ``quaternion``: how the observation stores the first object's orientation, "wxyz" (MuJoCo's order), "xyzw"
    (scipy's order) or None when it holds no real orientation (zeros or a constant); the snapshot always gives
    (w, x, y, z). ``second``: the second object slot's meaning, or None when the slot is empty (its orientation
    slot is never a real one, so only its position is offered).
    """

    first: str
    goal: str
    quaternion: str | None = "wxyz"
    second: str | None = None


_BLOCK = "the block (its centre)"
_RING_HANDLE = "the grasp point on the ring's handle"

METAWORLD_OBJECTS: dict[str, MetaWorldObjects] = {
    "assembly-v3": MetaWorldObjects(_RING_HANDLE, "where the ring's grasp point must go to sit on the peg"),
    "basketball-v3": MetaWorldObjects("the ball (its centre)", "a point in the hoop the ball must reach"),
    "bin-picking-v3": MetaWorldObjects(_BLOCK, "the spot in the right bin where the block must end up"),
    "box-close-v3": MetaWorldObjects("the box lid (its centre)", "where the lid must be to close the box"),
    "button-press-topdown-v3": MetaWorldObjects(
        "the top surface of the button", "where the button's top is when fully pressed down"
    ),
    "button-press-topdown-wall-v3": MetaWorldObjects(
        "the top surface of the button", "where the button's top is when fully pressed down"
    ),
    "button-press-v3": MetaWorldObjects(
        "the front surface of the button", "where the button's front is when fully pushed in"
    ),
    "button-press-wall-v3": MetaWorldObjects(
        "the front surface of the button", "where the button's front is when fully pushed in"
    ),
    "coffee-button-v3": MetaWorldObjects(
        "the button on the coffee machine's front", "where the button is when pressed in", quaternion=None
    ),
    "coffee-pull-v3": MetaWorldObjects("the mug (its centre)", "where the mug must end up", quaternion="xyzw"),
    "coffee-push-v3": MetaWorldObjects(
        "the mug (its centre)", "where the mug must end up, under the spout", quaternion="xyzw"
    ),
    "dial-turn-v3": MetaWorldObjects(
        "a point on the dial's rim (5 cm from its centre; it moves round as the dial turns)",
        "where that rim point is when the dial is at the target angle",
    ),
    "disassemble-v3": MetaWorldObjects(_RING_HANDLE, "a point above the peg the ring must be lifted to"),
    "door-close-v3": MetaWorldObjects(
        "the door handle", "where the handle is when the door is shut", quaternion="xyzw"
    ),
    "door-lock-v3": MetaWorldObjects(
        "the lock knob on the door (orientation: the door's)", "where the knob is when turned down (locked)"
    ),
    "door-open-v3": MetaWorldObjects(
        "the door handle", "where the handle is when the door has swung open", quaternion="xyzw"
    ),
    "door-unlock-v3": MetaWorldObjects(
        "the lock knob on the door (orientation: the door's)", "where the knob is when turned (unlocked)"
    ),
    "hand-insert-v3": MetaWorldObjects(_BLOCK, "the hole in the table top the block must go into"),
    "drawer-close-v3": MetaWorldObjects(
        "the drawer handle", "where the handle is when the drawer is shut", quaternion=None
    ),
    "drawer-open-v3": MetaWorldObjects(
        "the drawer handle (orientation: the drawer's)", "where the handle is when the drawer is open"
    ),
    "faucet-open-v3": MetaWorldObjects(
        "the end of the faucet handle (orientation: the faucet base's)",
        "where the handle end is when the tap is on",
    ),
    "faucet-close-v3": MetaWorldObjects(
        "the end of the faucet handle (orientation: the faucet base's)",
        "where the handle end is when the tap is off",
    ),
    "hammer-v3": MetaWorldObjects(
        "the hammer (its centre of mass)",
        "where the nail head is when driven fully into the wall",
        second="the nail head sticking out of the wall",
    ),
    "handle-press-side-v3": MetaWorldObjects(
        "the end of the handle", "where the handle end is when pressed fully down", quaternion=None
    ),
    "handle-press-v3": MetaWorldObjects(
        "the end of the handle", "where the handle end is when pressed fully down", quaternion=None
    ),
    "handle-pull-side-v3": MetaWorldObjects(
        "the middle of the handle", "where the handle is when pulled fully up", quaternion=None
    ),
    "handle-pull-v3": MetaWorldObjects(
        "the end of the handle", "where the handle end is when pulled fully up", quaternion=None
    ),
    "lever-pull-v3": MetaWorldObjects(
        "the end of the lever", "where the lever end is when the lever stands up", quaternion="xyzw"
    ),
    "pick-place-wall-v3": MetaWorldObjects(_BLOCK, "where the block must end up, behind the wall", "xyzw"),
    "pick-out-of-hole-v3": MetaWorldObjects(_BLOCK, "the point above the hole where the block must be held"),
    "pick-place-v3": MetaWorldObjects(_BLOCK, "where the block must be held, possibly in the air", "xyzw"),
    "plate-slide-v3": MetaWorldObjects("the plate (its centre)", "the spot inside the goal net", "xyzw"),
    "plate-slide-side-v3": MetaWorldObjects("the plate (its centre)", "the spot inside the goal net", "xyzw"),
    "plate-slide-back-v3": MetaWorldObjects(
        "the plate (its centre)", "the spot out of the net, nearer the robot", "xyzw"
    ),
    "plate-slide-back-side-v3": MetaWorldObjects(
        "the plate (its centre)", "the spot beside the net the plate must reach", "xyzw"
    ),
    "peg-insert-side-v3": MetaWorldObjects(
        "the grasp point on the peg", "a point inside the hole in the box where the peg's tip must go", "xyzw"
    ),
    "peg-unplug-side-v3": MetaWorldObjects(
        "the end of the peg sticking out of the box", "where the peg's end must be once pulled out"
    ),
    "soccer-v3": MetaWorldObjects("the ball (its centre)", "a point inside the goal", "xyzw"),
    "stick-push-v3": MetaWorldObjects(
        "the stick (its centre)",
        "where the thermos must end up",
        "xyzw",
        second="the thermos (a point at its side where the stick pushes)",
    ),
    "stick-pull-v3": MetaWorldObjects(
        "the stick (its centre)",
        "where the thermos must end up",
        "xyzw",
        second="the thermos's handle (the point the stick hooks into)",
    ),
    "push-v3": MetaWorldObjects(_BLOCK, "the spot on the table the block must reach", "xyzw"),
    "push-wall-v3": MetaWorldObjects(_BLOCK, "the spot behind the wall the block must reach", "xyzw"),
    "push-back-v3": MetaWorldObjects(_BLOCK, "the spot nearer the robot the block must reach", "xyzw"),
    "reach-v3": MetaWorldObjects(
        "a puck on the table that plays no part in this task", "the point the fingertips must reach", "xyzw"
    ),
    "reach-wall-v3": MetaWorldObjects(
        "a puck on the table that plays no part in this task",
        "the point beyond the wall the fingertips must reach",
        "xyzw",
    ),
    "shelf-place-v3": MetaWorldObjects(_BLOCK, "the spot on the shelf the block must reach", "xyzw"),
    "sweep-into-v3": MetaWorldObjects(_BLOCK, "the hole in the table the block must go into", "xyzw"),
    "sweep-v3": MetaWorldObjects(_BLOCK, "a point just past the table's edge the block must reach"),
    "window-open-v3": MetaWorldObjects(
        "the window's handle", "where the handle is when the window is open", quaternion=None
    ),
    "window-close-v3": MetaWorldObjects(
        "the window's handle", "where the handle is when the window is shut", quaternion=None
    ),
}

_METAWORLD_INTRO = """\
Meta-World v3: a Sawyer robot arm with a two-finger gripper works at a table. Positions are in metres in the
world frame: x runs sideways along the table, y points away from the robot's base, z points up; the table top
is at about z = 0 and the hand starts about 0.2 m above it. A simulator step lasts 0.0125 s; episodes last at
most 500 of them. Distances between positions: np.linalg.norm(a - b)."""

_METAWORLD_ACTION = """\
action: np.ndarray, shape (4,), each entry in [-1, 1]
    action[0:3]: move the hand by up to 1 cm per step along x, y, z (scaled by the value)
    action[3]: gripper effort: +1 closes the fingers (to grasp), -1 opens them"""


def _metaworld_attributes(objects: MetaWorldObjects) -> dict[str, AttributeSpec]:
    attributes = {
        "ee_position": AttributeSpec(
            (3,),
            "m; position of the gripper's hand (end effector); the point between the fingertips is "
            "about 0.045 m below it",
        ),
        "gripper_openness": AttributeSpec(
            (), "distance between the two fingers divided by 0.1 m, clipped to [0, 1]: 1 = wide open, 0 = closed"
        ),
        "object_position": AttributeSpec((3,), f"m; position of {objects.first}"),
    }
    if objects.quaternion is not None:
        attributes["object_quaternion"] = AttributeSpec(
            (4,), "orientation of that object as a unit quaternion (w, x, y, z)"
        )
    if objects.second is not None:
        attributes["second_object_position"] = AttributeSpec((3,), f"m; position of {objects.second}")
    attributes["goal_position"] = AttributeSpec((3,), f"m; {objects.goal}; fixed during an episode")
    return attributes


def _metaworld_abstraction(name: str) -> Abstraction:
    attributes = _metaworld_attributes(METAWORLD_OBJECTS[name])
    text = _render(
        f"{_METAWORLD_INTRO}\nTask {name}.",
        attributes,
        _METAWORLD_ACTION,
        [f"Goal: {goal_text(name)}"],
    )
    return Abstraction(METAWORLD_FAMILY, f"{METAWORLD}/{name}", text, attributes)


# ---------------------------------------------------------------- locomotion


class Robot(NamedTuple):
    """A gymnasium MuJoCo robot: what the prompt says about its body, its joints in qpos order (after the root),
    the joints its motors drive in action order, when an episode ends early, and its goal."""

    summary: str
    joints: tuple[str, ...]
    actuated: tuple[str, ...]
    ending: str
    goal: str
    planar: bool = True


_LEG = ("thigh_joint", "leg_joint", "foot_joint")
_LEFT_LEG = ("thigh_left_joint", "leg_left_joint", "foot_left_joint")
_CHEETAH = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
_FORWARD = "as fast as possible along +x without falling"
ROBOTS: dict[str, Robot] = {
    "Hopper-v5": Robot(
        "Hopper: a one-legged robot (torso, thigh, leg, foot) that moves in the x-z plane.",
        _LEG,
        _LEG,
        "The episode ends early (the robot fell) once torso_height <= 0.7 m, |torso_angle| >= 0.2 rad or any "
        "joint position or velocity leaves [-100, 100].",
        f"Hop forward {_FORWARD}.",
    ),
    "Walker2d-v5": Robot(
        "Walker2d: a two-legged robot (torso; right leg then left leg, each thigh, leg, foot) that moves in the "
        "x-z plane.",
        (*_LEG, *_LEFT_LEG),
        (*_LEG, *_LEFT_LEG),
        "The episode ends early (the robot fell) once torso_height leaves (0.8, 2.0) m or |torso_angle| >= 1 rad.",
        f"Walk forward {_FORWARD}.",
    ),
    "HalfCheetah-v5": Robot(
        "HalfCheetah: a two-legged cat-like robot (torso; back leg then front leg, each thigh, shin, foot) that "
        "moves in the x-z plane.",
        _CHEETAH,
        _CHEETAH,
        "Episodes never end early, even if the robot flips over.",
        "Run forward as fast as possible along +x.",
    ),
    "Ant-v5": Robot(
        "Ant: a four-legged robot (a round torso; legs 1 front-left, 2 front-right, 3 back-left, 4 back-right, "
        "each with a hip and an ankle joint) that moves in 3-D.",
        ("hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3", "hip_4", "ankle_4"),
        ("hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3"),
        "The episode ends early (the robot flipped or jumped) once torso_height leaves [0.2, 1.0] m.",
        f"Walk forward {_FORWARD}.",
        planar=False,
    ),
}
LOCOMOTION_TASKS: tuple[str, ...] = tuple(ROBOTS)

_LOCOMOTION_INTRO = """\
MuJoCo locomotion (gymnasium v5). Positions in metres, angles in radians, velocities per second, in the world
frame: x forward, z up (y to the robot's left). Episodes last at most 1000 simulator steps."""


def _locomotion_attributes(robot: Robot) -> dict[str, AttributeSpec]:
    n = len(robot.joints)
    attributes = {
        "torso_x": AttributeSpec((), "m; x position of the torso (distance travelled forward from about 0)"),
        "torso_height": AttributeSpec((), "m; height (z) of the torso above the ground"),
        "forward_velocity": AttributeSpec((), "m/s; velocity of the torso along +x (the direction to move in)"),
    }
    if robot.planar:
        attributes |= {
            "vertical_velocity": AttributeSpec((), "m/s; velocity of the torso along z (up is positive)"),
            "torso_angle": AttributeSpec(
                (), "rad; pitch of the torso, 0 at the start pose, positive tips its front/top forward and down"
            ),
            "angular_velocity": AttributeSpec((), "rad/s; rate of change of torso_angle"),
        }
    else:
        attributes |= {
            "torso_y": AttributeSpec((), "m; y position of the torso (sideways)"),
            "lateral_velocity": AttributeSpec((), "m/s; velocity of the torso along y (sideways)"),
            "vertical_velocity": AttributeSpec((), "m/s; velocity of the torso along z (up is positive)"),
            "torso_quaternion": AttributeSpec(
                (4,), "orientation of the torso as a unit quaternion (w, x, y, z); (1, 0, 0, 0) is upright"
            ),
            "angular_velocity": AttributeSpec((3,), "rad/s; angular velocity of the torso about its own x, y, z axes"),
        }
    attributes |= {
        "joint_positions": AttributeSpec((n,), f"rad; joint angles in the order {', '.join(robot.joints)}"),
        "joint_velocities": AttributeSpec((n,), "rad/s; joint angular velocities, same order"),
        "dt": AttributeSpec((), "s; simulated time that one env step (one action) lasts"),
    }
    return attributes


def _locomotion_action(robot: Robot) -> str:
    return (
        f"action: np.ndarray, shape ({len(robot.actuated)},), each entry in [-1, 1]\n"
        f"    torques of the joint motors, in the order {', '.join(robot.actuated)}; -1 and 1 are the strongest "
        "torques either way (large actions cost energy)"
    )


def _locomotion_abstraction(name: str) -> Abstraction:
    robot = ROBOTS[name]
    attributes = _locomotion_attributes(robot)
    closing = [robot.ending, f"Goal: {robot.goal}"]
    text = _render(f"{_LOCOMOTION_INTRO}\n{robot.summary}", attributes, _locomotion_action(robot), closing)
    return Abstraction(LOCOMOTION_FAMILY, f"{MUJOCO}/{name}", text, attributes)


# ---------------------------------------------------------------- shared


def _render(intro: str, attributes: Mapping[str, AttributeSpec], action: str, closing: list[str]) -> str:
    """The prompt text: ``intro``, a class-like listing of ``obs``, the action, then the ``closing`` lines."""
    listing = ['class Observation:  # "obs": read-only float64 numpy arrays; shape () is a scalar']
    listing += [
        f"    {name}: np.ndarray  # shape {spec.shape}; {spec.description}" for name, spec in attributes.items()
    ]
    return "\n".join([intro, "", *listing, "", action, "", *closing])


def abstraction_for(task: str) -> Abstraction:
    """The abstraction of ``task`` ("metaworld/drawer-open-v3", "mujoco/Hopper-v5" or a bare unambiguous name).

    An `UnknownTaskError` (a ValueError) with close matches for a name in neither suite, an `UnsupportedTaskError`
    for a known task without an abstraction (Humanoid).
    """
    suite, name = resolve_task(task)
    if suite == METAWORLD:
        return _metaworld_abstraction(name)
    if name in ROBOTS:
        return _locomotion_abstraction(name)
    supported = [f"{MUJOCO}/{robot}" for robot in ROBOTS]
    close = difflib.get_close_matches(name, list(ROBOTS), n=3, cutoff=0.3)
    hint = f" Closest supported: {', '.join(f'{MUJOCO}/{c}' for c in close)}." if close else ""
    raise UnsupportedTaskError(
        f"Text2Reward has no environment abstraction for {suite}/{name}: it covers the {len(METAWORLD_TASKS)} "
        f"Meta-World v3 tasks and {', '.join(supported)}.{hint}"
    )


def supported_tasks() -> tuple[str, ...]:
    """Every task with an abstraction, as full names."""
    return (*(f"{METAWORLD}/{n}" for n in METAWORLD_TASKS), *(f"{MUJOCO}/{n}" for n in LOCOMOTION_TASKS))

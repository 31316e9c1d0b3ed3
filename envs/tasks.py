"""Task names of the three suites, their defaults, and resolving what a user typed to ``"suite/name"``."""

from __future__ import annotations

import difflib

METAWORLD = "metaworld"
MUJOCO = "mujoco"
DMC = "dmc"

# The 50 Meta-World v3 tasks, in metaworld.env_dict.ALL_V3_ENVIRONMENTS order (a test keeps them equal).
# Listed here so that importing embodied_rl.envs does not import metaworld (~0.5 s).
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
    "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3", "faucet-open-v3",
    "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3",
    "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3", "pick-place-v3",
    "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-v3",
    "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3", "shelf-place-v3", "sweep-into-v3",
    "sweep-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip
MUJOCO_TASKS: tuple[str, ...] = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5")
# DeepMind Control Suite tasks as "<domain>-<task>" with dm_control's own names, in dm_control.suite.ALL_TASKS
# order (a test keeps them equal), without the two `lqr` tasks (unbounded actions, no time limit). Listed here
# so that importing embodied_rl.envs does not import dm_control.
DMC_TASKS: tuple[str, ...] = (
    "acrobot-swingup", "acrobot-swingup_sparse", "ball_in_cup-catch", "cartpole-balance",
    "cartpole-balance_sparse", "cartpole-swingup", "cartpole-swingup_sparse", "cartpole-two_poles",
    "cartpole-three_poles", "cheetah-run", "dog-stand", "dog-walk", "dog-trot", "dog-run", "dog-fetch",
    "finger-spin", "finger-turn_easy", "finger-turn_hard", "fish-upright", "fish-swim", "hopper-stand",
    "hopper-hop", "humanoid-stand", "humanoid-walk", "humanoid-run", "humanoid-run_pure_state",
    "humanoid_CMU-stand", "humanoid_CMU-walk", "humanoid_CMU-run", "manipulator-bring_ball",
    "manipulator-bring_peg", "manipulator-insert_ball", "manipulator-insert_peg", "pendulum-swingup",
    "point_mass-easy", "point_mass-hard", "quadruped-walk", "quadruped-run", "quadruped-escape",
    "quadruped-fetch", "reacher-easy", "reacher-hard", "stacker-stack_2", "stacker-stack_4",
    "swimmer-swimmer6", "swimmer-swimmer15", "walker-stand", "walker-walk", "walker-run",
)  # fmt: skip
DMC_DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(task.split("-", 1)[0] for task in DMC_TASKS))
# Other names of DMC domains, as Dreamer / DrQ / RePo write them ("cup_catch").
DMC_DOMAIN_ALIASES = {"cup": "ball_in_cup"}

SUITE_TASKS = {METAWORLD: METAWORLD_TASKS, MUJOCO: MUJOCO_TASKS, DMC: DMC_TASKS}
ALL_TASKS = tuple(f"{suite}/{task}" for suite, tasks in SUITE_TASKS.items() for task in tasks)

# Episode length in simulator steps (Meta-World's max_path_length; gymnasium's locomotion limit; DMC's 1000
# control steps, which is every task's own limit: 25 s of walker at 0.025 s, 10 s of cartpole at 0.01 s, ...).
DEFAULT_HORIZON = {METAWORLD: 500, MUJOCO: 1000, DMC: 1000}
# Meta-World: the TD-MPC / TD-MPC2 view ("corner2" moved to (0.75, 0.075, 0.7), which is exactly "corner4"),
# turned upright. Locomotion: the side camera that tracks the robot's centre of mass. DMC: per domain, see
# `dmc_default_camera` (camera 0, as Dreamer and RePo render).
DEFAULT_CAMERA = {METAWORLD: "corner4", MUJOCO: "track"}


def _dmc_key(name: str) -> str:
    """What DMC spellings are compared on: lower case, "-" and "_" alike ("Walker_Walk" = "walker-walk")."""
    return name.lower().replace("-", "_")


def _dmc_lookup() -> dict[str, str]:
    lookup = {}
    for task in DMC_TASKS:
        domain, name = task.split("-", 1)
        lookup[_dmc_key(task)] = task
        for alias, target in DMC_DOMAIN_ALIASES.items():
            if target == domain:
                lookup[_dmc_key(f"{alias}-{name}")] = task
    return lookup


_DMC_LOOKUP = _dmc_lookup()  # "ball_in_cup_catch", "cup_catch" -> "ball_in_cup-catch"


def dmc_task(name: str) -> str | None:
    """The canonical "<domain>-<task>" of a DMC task however it is spelled ("cup_catch", "Walker-Walk",
    "cartpole-swingup-sparse"), None when it names none."""
    return _DMC_LOOKUP.get(_dmc_key(name))


def dmc_domain_and_task(name: str) -> tuple[str, str]:
    """("ball_in_cup", "catch") for "ball_in_cup-catch": dm_control.suite.load's arguments."""
    domain, task = name.split("-", 1)
    return domain, task


class UnknownTaskError(ValueError):
    """A task name that is in neither suite; the message lists close matches."""


def resolve_task(task: str) -> tuple[str, str]:
    """``(suite, name)`` for "metaworld/drawer-open-v3", "mujoco/Hopper-v5" or a bare unambiguous name."""
    if not isinstance(task, str):
        raise UnknownTaskError(f"task must be a string like 'metaworld/drawer-open-v3', got {task!r}")
    suite, _, name = task.rpartition("/")
    if suite in SUITE_TASKS and name in SUITE_TASKS[suite]:
        return suite, name
    if suite == DMC and dmc_task(name) is not None:
        return DMC, dmc_task(name)
    if not suite:
        owners = [owner for owner, names in SUITE_TASKS.items() if name in names]
        if len(owners) == 1:
            return owners[0], name
        if not owners and dmc_task(name) is not None:
            return DMC, dmc_task(name)
    raise UnknownTaskError(_unknown_task_message(task))


def canonical_task(task: str) -> str:
    """The full ``"suite/name"`` of a task given in full or as a bare unambiguous name (`UnknownTaskError` else)."""
    return "/".join(resolve_task(task))


def full_task_name(task: str) -> str:
    """`canonical_task`, or `task` unchanged when it names no task (for names and comparisons; whatever builds
    the env reports the unknown task)."""
    try:
        return canonical_task(task)
    except UnknownTaskError:
        return task


def _close_tasks(task: str, n: int = 5, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` full task names closest to ``task``, whose name part (after any "/") is also matched
    against every suite's names, so "metaworld/Hopper-v5" suggests "mujoco/Hopper-v5"."""
    queries = {task.lower(), task.rpartition("/")[2].lower()}
    scores = {}
    for full in ALL_TASKS:
        keys = (full.lower(), full.split("/", 1)[1].lower())
        scores[full] = max(difflib.SequenceMatcher(None, q, k).ratio() for q in queries for k in keys)
    ranked = sorted(scores, key=scores.get, reverse=True)
    return [full for full in ranked[:n] if scores[full] >= cutoff]


def _unknown_task_message(task: str) -> str:
    suggestions = _close_tasks(task)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    message = (
        f"Unknown task {task!r}.{hint} Tasks are 'metaworld/<name>' ({len(METAWORLD_TASKS)} Meta-World v3 "
        f"tasks, e.g. 'metaworld/drawer-open-v3'), 'mujoco/<Name>-v5' ({', '.join(MUJOCO_TASKS)}) or "
        f"'dmc/<domain>-<task>' (DeepMind Control Suite, e.g. 'dmc/walker-walk')."
    )
    suite, _, name = task.rpartition("/")
    if suite == DMC:
        message += " " + _dmc_available(name)
    return message


def _dmc_available(name: str) -> str:
    """The tasks of the DMC domain that ``name`` starts with, or every domain when it names none."""
    key = _dmc_key(name)
    names = {_dmc_key(domain): domain for domain in DMC_DOMAINS}
    names.update({_dmc_key(alias): domain for alias, domain in DMC_DOMAIN_ALIASES.items()})
    matches = [prefix for prefix in names if key == prefix or key.startswith(prefix + "_")]
    if matches:
        domain = names[max(matches, key=len)]
        tasks = [task for task in DMC_TASKS if task.split("-", 1)[0] == domain]
        return f"DMC domain {domain!r} has the tasks: {', '.join(f'dmc/{task}' for task in tasks)}."
    return f"DMC domains: {', '.join(DMC_DOMAINS)}."

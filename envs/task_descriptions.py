"""One sentence per Meta-World v3 task saying what a successful episode achieves, written for this project.

Language feedback needs the goal in words: the VLM teacher of RL-VLM-F (Wang et al., ICML 2024) compares two
frames against it, and Text2Reward (Xie et al., ICLR 2024) turns an instruction into reward code. Each text
names the object, what happens to it and where it ends, and nothing about how the robot should move.
"""

from __future__ import annotations

import difflib

from .tasks import METAWORLD, METAWORLD_TASKS, UnknownTaskError, resolve_task

GOAL_TEXTS: dict[str, str] = {
    "assembly-v3": "Lift the ring by its handle and lower it onto the upright peg.",
    "basketball-v3": "Pick up the ball and drop it through the hoop.",
    "bin-picking-v3": "Move the small block from the left bin into the right bin.",
    "box-close-v3": "Pick up the lid and place it on the box so that the box is closed.",
    "button-press-topdown-v3": "Press the button down from above until it is fully pushed in.",
    "button-press-topdown-wall-v3": "Reach over the low wall and press the button down from above.",
    "button-press-v3": "Push the button on the front of the box straight in.",
    "button-press-wall-v3": "Reach past the low wall and push the button on the box straight in.",
    "coffee-button-v3": "Press the button on the front of the coffee machine.",
    "coffee-pull-v3": "Pull the mug out from under the coffee machine to the target spot.",
    "coffee-push-v3": "Push the mug across the table until it sits under the coffee machine's spout.",
    "dial-turn-v3": "Turn the dial on the box around to the target angle.",
    "disassemble-v3": "Lift the ring by its handle up and off the peg.",
    "door-close-v3": "Swing the open door shut.",
    "door-lock-v3": "Turn the lock knob on the door down to lock it.",
    "door-open-v3": "Pull the door open by its handle until it has swung wide.",
    "door-unlock-v3": "Turn the lock knob on the door to unlock it.",
    "hand-insert-v3": "Slide the block across the table into the hole in the table top.",
    "drawer-close-v3": "Push the open drawer all the way shut.",
    "drawer-open-v3": "Open the drawer by pulling its handle outward.",
    "faucet-open-v3": "Rotate the faucet handle to turn the tap on.",
    "faucet-close-v3": "Rotate the faucet handle the other way to turn the tap off.",
    "hammer-v3": "Pick up the hammer and drive the nail into the wall.",
    "handle-press-side-v3": "Press the handle on the side of the box all the way down.",
    "handle-press-v3": "Press the handle on the front of the box all the way down.",
    "handle-pull-side-v3": "Pull the handle on the side of the box all the way up.",
    "handle-pull-v3": "Pull the handle on the front of the box all the way up.",
    "lever-pull-v3": "Pull the lever up until it stands upright.",
    "pick-place-wall-v3": "Pick up the block, lift it over the wall and set it down at the target.",
    "pick-out-of-hole-v3": "Lift the block up out of the hole in the table and hold it at the target.",
    "pick-place-v3": "Pick up the block and move it through the air to the target position.",
    "plate-slide-v3": "Slide the plate forward across the table into the goal net.",
    "plate-slide-side-v3": "Slide the plate sideways across the table into the goal net.",
    "plate-slide-back-v3": "Slide the plate back out of the goal net towards the robot.",
    "plate-slide-back-side-v3": "Slide the plate sideways back out of the goal net.",
    "peg-insert-side-v3": "Pick up the peg and push it sideways into the hole in the box.",
    "peg-unplug-side-v3": "Pull the peg sideways out of the hole in the box.",
    "soccer-v3": "Push the ball across the table into the goal.",
    "stick-push-v3": "Grab the stick and use it to push the thermos to the target.",
    "stick-pull-v3": "Grab the stick, hook it into the thermos handle and pull the thermos to the target.",
    "push-v3": "Push the block across the table to the target spot.",
    "push-wall-v3": "Push the block around the wall to the target spot behind it.",
    "push-back-v3": "Push the block backwards across the table towards the robot, to the target spot.",
    "reach-v3": "Move the gripper to the target point in the air.",
    "reach-wall-v3": "Move the gripper over the wall to the target point behind it.",
    "shelf-place-v3": "Pick up the block and place it on the shelf.",
    "sweep-into-v3": "Sweep the block across the table into the hole.",
    "sweep-v3": "Sweep the block across the table and off its edge.",
    "window-open-v3": "Slide the window open sideways by its handle.",
    "window-close-v3": "Slide the open window shut sideways by its handle.",
}


def goal_text(task: str) -> str:
    """The goal of a Meta-World v3 task ("drawer-open-v3" or "metaworld/drawer-open-v3") in one sentence;
    an UnknownTaskError (a ValueError) with close matches for any other name."""
    try:
        suite, name = resolve_task(task)
    except UnknownTaskError:
        suite, name = None, str(task)
    if suite == METAWORLD and name in GOAL_TEXTS:
        return GOAL_TEXTS[name]
    bare = name.rpartition("/")[2]
    close = difflib.get_close_matches(bare, METAWORLD_TASKS, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"no goal text for task {task!r}: goal texts exist for the {len(GOAL_TEXTS)} Meta-World v3 tasks "
        f"(e.g. 'drawer-open-v3').{hint}"
    )

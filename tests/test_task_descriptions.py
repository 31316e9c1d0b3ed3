"""Goal texts of the Meta-World v3 tasks (embodied_rl.envs.task_descriptions): one per task, clear errors else."""

import pytest

from embodied_rl.envs.task_descriptions import GOAL_TEXTS, goal_text
from embodied_rl.envs.tasks import UnknownTaskError


def test_every_metaworld_v3_task_has_a_one_sentence_goal():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert set(GOAL_TEXTS) == set(ALL_V3_ENVIRONMENTS)
    for task in ALL_V3_ENVIRONMENTS:
        text = goal_text(task)
        assert text == goal_text(f"metaworld/{task}")  # bare and full names alike
        assert text[0].isupper() and text.endswith(".") and text.count(".") == 1, text
        assert 4 <= len(text.split()) <= 25, text
    assert len(set(GOAL_TEXTS.values())) == len(GOAL_TEXTS)  # no two tasks share a goal


def test_drawer_open_goal_names_the_drawer():
    assert "drawer" in goal_text("drawer-open-v3").lower() and "open" in goal_text("drawer-open-v3").lower()
    assert "shut" in goal_text("drawer-close-v3") or "close" in goal_text("drawer-close-v3")


@pytest.mark.parametrize(
    "task, suggestion",
    [("drawer-opn-v3", "drawer-open-v3"), ("metaworld/door-opne-v3", "door-open-v3"), ("mujoco/Hopper-v5", None)],
)
def test_unknown_task_is_a_clear_error_with_close_matches(task, suggestion):
    with pytest.raises(UnknownTaskError, match=f"no goal text for task '{task}'") as info:
        goal_text(task)
    if suggestion:
        assert f"Did you mean: {suggestion}" in str(info.value)
    else:
        assert "Did you mean" not in str(info.value)

"""A generated reward in place of the env's: batched per vector step (one sandbox call for all sub-envs), the
terminal step's reward from the state it reached, per-episode component sums logged; locomotion behaviours'
success criteria."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from embodied_rl.envs import make_env, make_vector_env
from embodied_rl.rewards.text2reward import SnapshotInfo, abstraction_for
from embodied_rl.rewards.text2reward.behaviours import BEHAVIOURS, BehaviourSuccess, behaviour_named
from embodied_rl.rewards.text2reward.reward_wrappers import (
    SandboxVectorReward,
    component_curves,
    read_component_log,
)

TASK = "metaworld/reach-v3"
HAND_X = """
def compute_dense_reward(obs, action):
    return float(obs.ee_position[0]), {"hand_x": float(obs.ee_position[0]), "one": 1.0}
"""


def test_vector_reward_is_one_sandbox_call_per_vector_step_with_final_states(tmp_path):
    snapshot = functools.partial(SnapshotInfo, abstraction=abstraction_for(TASK))
    envs = make_vector_env({"task": TASK, "time_limit": 3}, num_envs=2, wrappers=[snapshot])
    log = tmp_path / "components.jsonl"
    envs = SandboxVectorReward(envs, HAND_X, workdir=tmp_path / "work", components_path=log)
    try:
        envs.reset(seed=0)
        for step in range(7):
            actions = envs.action_space.sample()
            _, reward, terminated, truncated, info = envs.step(actions)
            # the reward of a sub-env whose episode ended is from the state its last step reached (final_info)
            done = terminated | truncated
            reached = info["final_info"]["snapshot"] if done.any() else info["snapshot"]
            assert done.all() or not done.any()  # both sub-envs' episodes have 3 steps
            np.testing.assert_allclose(reward, reached["ee_position"][:, 0])
            if done.any():  # not the reset state that followed
                assert not np.allclose(reward, info["snapshot"]["ee_position"][:, 0])
            assert info["env_reward"].shape == (2,) and not np.allclose(info["env_reward"], reward)
            assert envs.sandbox.stats.calls == step + 1  # both sub-envs in one call
    finally:
        envs.close()
    rows = read_component_log(log)
    assert len(rows) == 4 and {row["length"] for row in rows} == {3}  # one line per finished episode
    assert all(row["components"]["one"] == 3.0 for row in rows)
    assert all(row["return"] == pytest.approx(row["components"]["hand_x"]) for row in rows)
    curves = component_curves(rows, parts=3)
    assert sum(part["episodes"] for part in curves) == 4 and curves[-1]["components"]["one"]["mean"] == 3.0


def test_component_log_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "components.jsonl"
    path.write_text('{"env_steps": 3, "length": 3, "return": 1.0, "components": {}}\n{"env_st')
    assert len(read_component_log(path)) == 1 and read_component_log(tmp_path / "missing.jsonl") == []


def test_behaviours_cover_every_locomotion_robot_and_name_their_task():
    tasks = {b.task for b in BEHAVIOURS.values()}
    assert tasks == {f"mujoco/{name}-v5" for name in ("Hopper", "Walker2d", "HalfCheetah", "Ant")}
    with pytest.raises(ValueError, match="known for mujoco/Hopper-v5: hopper-forward"):
        behaviour_named("hopper-moonwalk", "mujoco/Hopper-v5")
    with pytest.raises(ValueError, match="is for mujoco/Hopper-v5"):
        behaviour_named("hopper-forward", "mujoco/Walker2d-v5")


@pytest.mark.parametrize(
    "name, qpos_index, shift, succeeds",
    [
        ("hopper-forward", 0, 5.1, True),
        ("hopper-forward", 0, 4.9, False),
        ("hopper-forward", 0, -6.0, False),
        ("halfcheetah-backward", 0, -10.1, True),
        ("halfcheetah-backward", 0, 10.1, False),
        ("hopper-frontflip", 2, 2 * math.pi + 0.01, True),
        ("hopper-frontflip", 2, -2 * math.pi - 0.01, False),
        ("hopper-backflip", 2, -2 * math.pi - 0.01, True),
    ],
)
def test_behaviour_success_measures_from_the_episode_start(name, qpos_index, shift, succeeds):
    behaviour = BEHAVIOURS[name]
    env = make_env({"task": behaviour.task}, wrappers=[functools.partial(BehaviourSuccess, behaviour=behaviour)])
    try:
        _, info = env.reset(seed=0)
        assert info["success"] is False
        data = env.unwrapped.sim.data
        data.qpos[qpos_index] += shift  # moved (or turned) since the start, then one small step
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
        assert info["success"] is succeeds
    finally:
        env.close()


def test_flip_sign_matches_the_torso_pitching_forward():
    """A growing root hinge angle turns the torso's top towards +x (forward): the front flip's direction."""
    env = make_env({"task": "mujoco/Hopper-v5"})
    try:
        env.reset(seed=0)
        sim = env.unwrapped.sim
        import mujoco

        torso = sim.model.body("torso").id
        mujoco.mj_forward(sim.model, sim.data)
        before = sim.data.xmat[torso].reshape(3, 3)[:, 2].copy()  # the torso's z axis in the world
        sim.data.qpos[2] += 0.3
        mujoco.mj_forward(sim.model, sim.data)
        after = sim.data.xmat[torso].reshape(3, 3)[:, 2]
        assert after[0] > before[0] + 0.2  # its top moved towards +x
    finally:
        env.close()

"""Text2Reward's environment abstraction: prompt texts for every supported task, and snapshots read from live envs
(matching the env's state, plain data, batched over vector envs, read-only once wrapped)."""

import functools
import gc
import inspect
import pickle

import numpy as np
import pytest

from embodied_rl.envs import METAWORLD_TASKS, UnknownTaskError, make_env, make_vector_env, subenv_seeds
from embodied_rl.envs.task_descriptions import goal_text
from embodied_rl.rewards.text2reward.abstraction import (
    METAWORLD_OBJECTS,
    ROBOTS,
    Abstraction,
    AttributeSpec,
    UnsupportedTaskError,
    abstraction_for,
    supported_tasks,
)
from embodied_rl.rewards.text2reward.snapshot import (
    ReadOnlySnapshot,
    SnapshotInfo,
    snapshots_from_info,
    take_snapshot,
    take_snapshots,
)

LOCOMOTION = [f"mujoco/{name}" for name in ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5")]
# drawer-open: (w, x, y, z) orientation; push: scipy's (x, y, z, w); hammer: a second object; window-open: none
METAWORLD_STEPPED = ["drawer-open-v3", "push-v3", "hammer-v3", "window-open-v3"]


def test_supported_tasks_are_the_50_metaworld_tasks_and_four_robots():
    assert set(METAWORLD_OBJECTS) == set(METAWORLD_TASKS) and len(METAWORLD_TASKS) == 50
    assert supported_tasks() == (*(f"metaworld/{t}" for t in METAWORLD_TASKS), *LOCOMOTION)


@pytest.mark.parametrize("task", supported_tasks())
def test_every_task_has_an_abstraction_whose_text_names_every_attribute(task):
    abstraction = abstraction_for(task)
    assert isinstance(abstraction, Abstraction) and abstraction.task == task
    assert abstraction.family == ("metaworld" if task.startswith("metaworld/") else "locomotion")
    for name, spec in abstraction.attributes.items():
        assert isinstance(spec, AttributeSpec) and isinstance(spec.shape, tuple) and spec.description
        assert f"    {name}: np.ndarray  # shape {spec.shape}; {spec.description}" in abstraction.text
    assert "action: np.ndarray, shape (" in abstraction.text
    if abstraction.family == "metaworld":
        assert goal_text(task) in abstraction.text
        assert {"ee_position", "gripper_openness", "object_position", "goal_position"} <= set(abstraction.attributes)
    else:
        assert {"torso_height", "forward_velocity", "joint_positions", "joint_velocities", "dt"} <= set(
            abstraction.attributes
        )
    assert abstraction_for(task.split("/")[1]) == abstraction  # a bare name resolves the same


def test_unknown_and_unsupported_tasks_give_clear_errors():
    with pytest.raises(UnknownTaskError, match="drawer-open-v3"):
        abstraction_for("metaworld/drawer-opn-v3")
    with pytest.raises(UnsupportedTaskError, match="no environment abstraction for mujoco/Humanoid-v5.*Hopper"):
        abstraction_for("mujoco/Humanoid-v5")


def test_metaworld_object_table_matches_what_metaworld_observes():
    """The orientation order and the second object of each task, checked against Meta-World's own code."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    for task, objects in METAWORLD_OBJECTS.items():
        env_class = ALL_V3_ENVIRONMENTS[task]
        quaternion_code = inspect.getsource(env_class._get_quat_objects)
        has_second = "hstack" in inspect.getsource(env_class._get_pos_objects)
        if "as_quat()" in quaternion_code:
            expected = "xyzw"  # scipy's order
        elif "xquat" in quaternion_code:
            expected = "wxyz"  # MuJoCo's order
        else:
            expected = None  # zeros or a constant
        assert objects.quaternion == expected, task
        assert (objects.second is not None) == has_second, task


def test_locomotion_texts_match_the_robots():
    """Joint order (qpos), action order (actuators) and episode ends, against the MuJoCo models and gymnasium."""
    for task in LOCOMOTION:
        robot = ROBOTS[task.split("/")[1]]
        env = make_env(task, seed=0)
        sim = env.unwrapped.sim
        model = sim.model
        root_joints = 3 if robot.planar else 1
        joints = tuple(model.joint(i).name for i in range(root_joints, model.njnt))
        assert robot.joints == joints, task
        assert robot.actuated == tuple(model.joint(j).name for j in model.actuator_trnid[:, 0]), task
        assert env.action_space.shape == (len(robot.actuated),)
        z_range = getattr(sim, "_healthy_z_range", None)
        if z_range is not None:
            assert all(f"{bound:g}" in robot.ending for bound in z_range if np.isfinite(bound)), task
        env.close()


def assert_snapshot_fits(snapshot, abstraction):
    assert list(snapshot) == list(abstraction.attributes)
    for name, spec in abstraction.attributes.items():
        value = snapshot[name]
        assert type(value) is np.ndarray and value.dtype == np.float64, name
        assert value.shape == spec.shape and np.all(np.isfinite(value)), name


def quaternion_wxyz(observed, order):
    return observed[[3, 0, 1, 2]] if order == "xyzw" else observed


@pytest.mark.parametrize("task", METAWORLD_STEPPED)
def test_metaworld_snapshots_match_the_observation(task):
    abstraction = abstraction_for(task)
    objects = METAWORLD_OBJECTS[task]
    env = make_env(f"metaworld/{task}", seed=3)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for step in range(4):
        snapshot = take_snapshot(env, abstraction)
        assert_snapshot_fits(snapshot, abstraction)
        close = functools.partial(np.testing.assert_allclose, atol=1e-6, err_msg=f"{task} step {step}")
        close(snapshot["ee_position"], obs[0:3])
        close(snapshot["gripper_openness"], obs[3])
        close(snapshot["object_position"], obs[4:7])
        if objects.quaternion is not None:
            close(snapshot["object_quaternion"], quaternion_wxyz(obs[7:11], objects.quaternion))
            assert abs(np.linalg.norm(snapshot["object_quaternion"]) - 1) < 1e-5
        if objects.second is not None:
            close(snapshot["second_object_position"], obs[11:14])
        close(snapshot["goal_position"], obs[36:39])
        obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    env.close()


@pytest.mark.parametrize("task", LOCOMOTION)
def test_locomotion_snapshots_match_the_mujoco_data(task):
    import mujoco  # after embodied_rl.envs, which picks the rendering backend before mujoco loads

    abstraction = abstraction_for(task)
    env = make_env(task, seed=1)
    env.reset()
    rng = np.random.default_rng(0)
    sim = env.unwrapped.sim
    for _ in range(3):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        snapshot = take_snapshot(env, abstraction)
        assert_snapshot_fits(snapshot, abstraction)
        qpos, qvel = sim.data.qpos, sim.data.qvel
        assert snapshot["torso_x"] == qpos[0] and snapshot["forward_velocity"] == qvel[0]
        assert snapshot["dt"] == sim.dt
        if ROBOTS[task.split("/")[1]].planar:
            assert snapshot["torso_angle"] == qpos[2] and snapshot["angular_velocity"] == qvel[2]
            assert snapshot["vertical_velocity"] == qvel[1]
            np.testing.assert_array_equal(snapshot["joint_positions"], qpos[3:])
            np.testing.assert_array_equal(snapshot["joint_velocities"], qvel[3:])
        else:
            assert snapshot["torso_y"] == qpos[1] and snapshot["torso_height"] == qpos[2]
            assert snapshot["lateral_velocity"] == qvel[1] and snapshot["vertical_velocity"] == qvel[2]
            np.testing.assert_array_equal(snapshot["torso_quaternion"], qpos[3:7])
            np.testing.assert_array_equal(snapshot["angular_velocity"], qvel[3:6])
            np.testing.assert_array_equal(snapshot["joint_positions"], qpos[7:])
            np.testing.assert_array_equal(snapshot["joint_velocities"], qvel[6:])
        if task in ("mujoco/Hopper-v5", "mujoco/Walker2d-v5"):  # gymnasium's health checks read qpos[1] as height
            assert snapshot["torso_height"] == pytest.approx(qpos[1])
    mujoco.mj_forward(sim.model, sim.data)  # body poses for the current qpos (mj_step leaves the previous ones)
    torso = sim.data.body("torso").xpos
    assert snapshot["torso_x"] == pytest.approx(torso[0]) and snapshot["torso_height"] == pytest.approx(torso[2])
    env.close()


def test_dt_counts_the_action_repeats():
    abstraction = abstraction_for("mujoco/Hopper-v5")
    env = make_env("mujoco/Hopper-v5", seed=0, action_repeat=3)
    env.reset()
    assert take_snapshot(env, abstraction)["dt"] == pytest.approx(3 * env.unwrapped.sim.dt)
    env.close()


def test_snapshots_are_plain_data_copied_from_the_env():
    abstraction = abstraction_for("mujoco/Ant-v5")
    env = make_env("mujoco/Ant-v5", seed=0)
    env.reset()
    snapshot = take_snapshot(env, abstraction)
    before = pickle.loads(pickle.dumps(snapshot))
    assert before.keys() == snapshot.keys()
    assert all(np.array_equal(before[k], snapshot[k]) for k in snapshot)
    # one level of references: the dict holds only names and arrays, the arrays own their memory
    assert all(type(ref) in (str, np.ndarray) for ref in gc.get_referents(snapshot))
    assert all(value.base is None or value.base.base is None for value in snapshot.values())
    data = env.unwrapped.sim.data
    assert not any(np.shares_memory(value, field) for value in snapshot.values() for field in (data.qpos, data.qvel))
    env.step(np.ones(8, np.float32))  # stepping the env leaves an earlier snapshot as it was
    assert all(np.array_equal(before[k], snapshot[k]) for k in snapshot)
    env.close()


def test_a_snapshot_needs_an_env_of_its_task():
    env = make_env("mujoco/Hopper-v5", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="Walker2d"):
        take_snapshot(env, abstraction_for("mujoco/Walker2d-v5"))
    env.close()


def test_read_only_snapshot_refuses_writes_and_names_the_attributes():
    values = {"ee_position": np.array([0.1, 0.2, 0.3]), "gripper_openness": np.array(0.5)}
    obs = ReadOnlySnapshot(values)
    assert obs.ee_position.tolist() == [0.1, 0.2, 0.3] and float(obs.gripper_openness) == 0.5
    assert not obs.ee_position.flags.writeable and not obs.gripper_openness.flags.writeable
    with pytest.raises(ValueError):
        obs.ee_position[0] = 1.0
    with pytest.raises(ValueError):
        obs.ee_position += 1.0
    for name in ("ee_position", "new_name", "_values"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(obs, name, np.zeros(3))
    with pytest.raises(AttributeError, match="read-only"):
        del obs.ee_position
    with pytest.raises(TypeError):
        obs._values["ee_position"] = np.zeros(3)  # the mapping behind it is read-only too
    with pytest.raises(AttributeError, match="ee_positon.*available: ee_position, gripper_openness"):
        obs.ee_positon  # noqa: B018
    values["ee_position"][0] = 9.0  # a copy: the caller's arrays stay theirs
    assert obs.ee_position[0] == 0.1 and values["ee_position"].flags.writeable
    assert sorted(dir(obs)) == ["ee_position", "gripper_openness"]
    again = pickle.loads(pickle.dumps(obs))
    assert again.ee_position.tolist() == [0.1, 0.2, 0.3] and not again.ee_position.flags.writeable


def test_vector_env_snapshots_match_single_env_snapshots():
    """Sync vector env: one snapshot per sub-env, equal to a single env's with the same seed, after reset and
    steps; a step that ends an episode reports the state it reached (``final_info``), not the reset after it."""
    task, num_envs = "mujoco/Hopper-v5", 2
    abstraction = abstraction_for(task)
    wrappers = [functools.partial(SnapshotInfo, abstraction=abstraction)]
    vector_env = make_vector_env(task, num_envs, seed=5, time_limit=2, wrappers=wrappers)
    singles = [make_env(task, seed=seed, time_limit=2) for seed in subenv_seeds(5, num_envs)]
    _, info = vector_env.reset(seed=subenv_seeds(5, num_envs))
    for env in singles:
        env.reset()
    expected = [take_snapshot(env, abstraction) for env in singles]
    assert_same(take_snapshots(vector_env, abstraction), expected)
    assert_same(snapshots_from_info(info, num_envs), expected)
    actions = np.random.default_rng(0).uniform(-1, 1, (num_envs, 3)).astype(np.float32)
    for step in range(2):
        _, _, terminated, truncated, info = vector_env.step(actions)
        for env, action in zip(singles, actions, strict=True):
            env.step(action)
        expected = [take_snapshot(env, abstraction) for env in singles]
        assert_same(snapshots_from_info(info, num_envs), expected)
        if step == 0:
            assert_same(take_snapshots(vector_env, abstraction), expected)
            assert_same(take_snapshots(vector_env.envs, abstraction), expected)  # a plain list of envs
    assert truncated.all()  # the second step ended both episodes; take_snapshots now sees the reset states
    reset_heights = [s["torso_x"] for s in take_snapshots(vector_env, abstraction)]
    assert not np.allclose(reset_heights, [s["torso_x"] for s in expected])
    vector_env.close()
    for env in singles:
        env.close()


def test_async_vector_env_snapshots_go_through_the_wrapper():
    task, num_envs = "mujoco/Hopper-v5", 2
    abstraction = abstraction_for(task)
    wrappers = [functools.partial(SnapshotInfo, abstraction=abstraction)]
    seeds = subenv_seeds(7, num_envs)
    async_env = make_vector_env(task, num_envs, asynchronous=True, seed=7, wrappers=wrappers)
    sync_env = make_vector_env(task, num_envs, seed=7, wrappers=wrappers)
    _, async_info = async_env.reset(seed=seeds)
    sync_env.reset(seed=seeds)
    expected = take_snapshots(sync_env, abstraction)
    assert_same(take_snapshots(async_env, abstraction), expected)
    assert_same(snapshots_from_info(async_info, num_envs), expected)
    async_env.close()
    sync_env.close()
    bare = make_vector_env(task, num_envs, asynchronous=True, seed=7)
    bare.reset()
    with pytest.raises(ValueError, match="SnapshotInfo"):
        take_snapshots(bare, abstraction)
    bare.step(np.zeros((num_envs, 3), np.float32))  # asking did not break the workers
    bare.close()


def assert_same(snapshots, expected):
    assert len(snapshots) == len(expected)
    for snapshot, reference in zip(snapshots, expected, strict=True):
        assert snapshot.keys() == reference.keys()
        for name in snapshot:
            assert snapshot[name].dtype == np.float64 and snapshot[name].shape == reference[name].shape
            np.testing.assert_allclose(snapshot[name], reference[name], rtol=0, atol=1e-12, err_msg=name)

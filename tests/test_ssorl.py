"""SS-ORL data side: split, state windows, inverse dynamics training and model selection, labelling, arms.

Synthetic trajectories only (no envs): the dynamics are linear, s_{t+1} = s_t + B a_t, so the true inverse
dynamics a_t = B^+ (s_{t+1} - s_t) is known and small networks learn it in about a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from embodied_rl.data import DatasetError, Trajectory
from embodied_rl.labelling import (
    IDMConfig,
    InverseDynamicsModel,
    evaluate_inverse_dynamics,
    state_windows,
    train_inverse_dynamics,
)
from embodied_rl.pipelines.ssorl import (
    ARMS,
    ActionFreeTrajectory,
    action_error,
    build_arm_dataset,
    hide_actions,
    label_trajectories,
    load_arm_dataset,
    prepare_ssorl_dataset,
    save_arm_dataset,
    split_trajectories,
)

REPO = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 4, 2
B_MATRIX = np.random.default_rng(123).normal(size=(OBS_DIM, ACT_DIM)).astype(np.float32)  # s' = s + B a


def linear_trajectory(episode: int, steps: int = 40, rng: np.random.Generator | None = None, flip: bool = False):
    """Actions uniform in [-0.9, 0.9]; return = episode (so returns are distinct and known).

    `flip=True` records the negated actions: trajectories whose inverse dynamics is the opposite of the others'.
    """
    rng = rng or np.random.default_rng(episode)
    actions = rng.uniform(-0.9, 0.9, size=(steps, ACT_DIM)).astype(np.float32)  # (T, A)
    states = np.zeros((steps + 1, OBS_DIM), np.float32)  # (T+1, D)
    states[0] = rng.normal(size=OBS_DIM)
    for t in range(steps):
        states[t + 1] = states[t] + B_MATRIX @ actions[t]
    rewards = np.full(steps, episode / steps)
    zeros = np.zeros(steps, dtype=bool)
    return Trajectory(states, -actions if flip else actions, rewards, zeros, zeros, zeros, episode_id=episode)


def tiny_cfg(**overrides) -> IDMConfig:
    values = dict(hidden_dims=(64, 64), steps=600, eval_every=100, lr=3e-3, batch_size=128, val_fraction=0.1)
    return IDMConfig(**{**values, **overrides})


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- split


def test_split_sizes_low_return_pool_disjointness_and_hidden_actions():
    trajectories = [linear_trajectory(e, steps=5) for e in np.random.default_rng(0).permutation(40)]
    labelled, unlabelled = split_trajectories(trajectories, labelled_fraction=0.1, return_quantile=0.5, seed=3)

    assert len(labelled) == 4 and len(unlabelled) == 36
    assert all(t.episode_return < 20 for t in labelled)  # returns are 0..39: the lower half is < 20
    ids_l, ids_u = {t.episode_id for t in labelled}, {t.episode_id for t in unlabelled}
    assert not ids_l & ids_u and ids_l | ids_u == set(range(40))
    by_id = {t.episode_id: t for t in trajectories}
    for t in unlabelled:
        assert isinstance(t, ActionFreeTrajectory) and np.isnan(t.actions).all()
        np.testing.assert_array_equal(t.true_actions, by_id[t.episode_id].actions)
        np.testing.assert_array_equal(t.observations, by_id[t.episode_id].observations)
    for t in labelled:
        assert not isinstance(t, ActionFreeTrajectory) and np.isfinite(t.actions).all()
    # the originals are untouched
    assert all(np.isfinite(t.actions).all() for t in trajectories)


def test_split_rounds_to_at_least_one_and_quantile_one_uses_everything():
    trajectories = [linear_trajectory(e, steps=3) for e in range(7)]
    labelled, unlabelled = split_trajectories(trajectories, labelled_fraction=0.01, return_quantile=0.2, seed=0)
    assert len(labelled) == 1 and labelled[0].episode_id in (0, 1)  # pool: ceil(0.2 * 7) = 2 lowest
    labelled, _ = split_trajectories(trajectories, labelled_fraction=0.3, return_quantile=0.2, seed=0)
    assert sorted(t.episode_id for t in labelled) == [0, 1]  # round(2.1) = 2 of a pool of ceil(1.4) = 2
    drawn = set()
    for seed in range(60):
        labelled, _ = split_trajectories(trajectories, labelled_fraction=0.3, return_quantile=1.0, seed=seed)
        assert len(labelled) == 2  # round(0.3 * 7) = 2
        drawn |= {t.episode_id for t in labelled}
    assert drawn == set(range(7))


def test_split_labels_the_rounded_fraction_of_the_trajectories():
    trajectories = [linear_trajectory(e, steps=3) for e in range(20)]
    for fraction, expected in ((0.19, 4), (0.125, 3), (0.1, 2)):  # round(3.8), round(2.5) (half up), round(2.0)
        labelled, unlabelled = split_trajectories(trajectories, labelled_fraction=fraction, return_quantile=1.0)
        assert (len(labelled), len(unlabelled)) == (expected, 20 - expected), fraction


def test_split_draws_uniformly_from_the_pool_and_is_deterministic_by_seed():
    trajectories = [linear_trajectory(e, steps=3) for e in range(20)]

    def ids(seed):
        return [t.episode_id for t in split_trajectories(trajectories, 0.1, 0.5, seed=seed)[0]]

    assert ids(7) == ids(7)
    assert len({tuple(ids(seed)) for seed in range(10)}) > 1
    counts = np.bincount(np.concatenate([ids(seed) for seed in range(400)]), minlength=20)
    assert counts[10:].sum() == 0  # never above the median return
    assert counts[:10].min() > 40  # every pool member drawn: ~80 each expected (not just the very lowest)


def test_split_errors_are_clear():
    trajectories = [linear_trajectory(e, steps=3) for e in range(10)]
    with pytest.raises(ValueError, match="only 5 of 10"):
        split_trajectories(trajectories, labelled_fraction=0.6, return_quantile=0.5)
    with pytest.raises(ValueError, match="labelled_fraction"):
        split_trajectories(trajectories, labelled_fraction=1.0)
    with pytest.raises(ValueError, match="return_quantile"):
        split_trajectories(trajectories, return_quantile=0.0)
    with pytest.raises(DatasetError, match="at least 2"):
        split_trajectories(trajectories[:1])


# ---------------------------------------------------------------- state windows


def test_state_windows_include_the_transition_and_repeat_edge_states():
    obs = np.arange(4, dtype=np.float32)[:, None] * np.array([[1.0, 10.0]], np.float32)  # (T+1=4, 2): s_t = (t, 10t)

    def first_coordinate(window):
        return state_windows(obs, window)[..., 0].tolist()  # (T, W)

    assert first_coordinate(0) == [[0, 1], [1, 2], [2, 3]]
    assert first_coordinate(1) == [[0, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert first_coordinate(2) == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3]]
    assert state_windows(obs, 1).shape == (3, 3, 2)
    np.testing.assert_array_equal(state_windows(obs, 1)[..., 1], 10 * state_windows(obs, 1)[..., 0])
    with pytest.raises(ValueError, match="window"):
        state_windows(obs, -1)


def test_model_predicts_trajectories_through_the_same_windows():
    model = InverseDynamicsModel(OBS_DIM, ACT_DIM, window=2, hidden_dims=(8,), ensemble_size=3)
    trajectory = linear_trajectory(0, steps=6)
    windows = torch.as_tensor(state_windows(trajectory.observations, 2))  # (6, 5, D)
    with torch.no_grad():
        expected = model.predict(windows).numpy()
    np.testing.assert_allclose(model.predict_actions(trajectory.observations), expected, rtol=1e-6)
    assert model.net(torch.zeros(1, 5 * OBS_DIM)).shape == (3, 1, 2 * ACT_DIM)


def test_proxy_actions_are_the_ensemble_mean_of_the_members_predictions():
    torch.manual_seed(0)
    model = InverseDynamicsModel(OBS_DIM, ACT_DIM, hidden_dims=(16,), ensemble_size=3)  # untrained: members differ
    windows = torch.as_tensor(state_windows(linear_trajectory(0, steps=10).observations, 1))  # (T, 3, D)
    with torch.no_grad():
        loc, _ = model.net(model.encode(windows)).chunk(2, dim=-1)  # (E, T, A)
        proxy = model.predict(windows)
    members = torch.tanh(loc)  # each member's deterministic action
    torch.testing.assert_close(proxy, members.mean(dim=0))
    assert not torch.allclose(proxy, members[0], atol=1e-3)


def test_idm_evaluation_is_the_per_element_mse_and_the_members_mean_nll():
    torch.manual_seed(0)
    model = InverseDynamicsModel(OBS_DIM, ACT_DIM, hidden_dims=(16,), ensemble_size=2)
    trajectories = [linear_trajectory(e, steps=8) for e in range(3)]
    metrics = evaluate_inverse_dynamics(model, trajectories)

    windows = torch.as_tensor(np.concatenate([state_windows(t.observations, 1) for t in trajectories]))  # (N, W, D)
    actions = torch.as_tensor(np.concatenate([t.actions for t in trajectories]))  # (N, A)
    with torch.no_grad():
        log_prob = model.distribution(windows).log_prob(actions, eps=model.action_eps)  # (E, N)
        squared_error = (model.predict(windows) - actions).square()  # (N, A)
    assert metrics["nll"] == pytest.approx(-float(log_prob.mean()), rel=1e-5)
    assert metrics["mse"] == pytest.approx(float(squared_error.mean()), rel=1e-5)


# ---------------------------------------------------------------- inverse dynamics


def test_explained_variance_of_per_dim_means_is_zero():
    """Predicting each action dim's mean explains nothing, however far apart the dims' means are."""
    truth = np.random.default_rng(0).normal(size=(200, ACT_DIM)).astype(np.float32) * 0.1
    truth[:, 0] += 0.8  # dims with very different means: a pooled variance would credit the mean predictor
    trajectory = Trajectory(
        np.zeros((201, OBS_DIM), np.float32), truth, np.zeros(200), *[np.zeros(200, dtype=bool)] * 3
    )

    class MeanPredictor:
        def predict_actions(self, observations):  # (T+1, D) -> (T, A)
            return np.broadcast_to(truth.mean(axis=0), truth.shape)

    error = action_error(MeanPredictor(), [trajectory], [truth])
    assert abs(error["explained_variance"]) < 1e-5
    assert error["mse"] == pytest.approx(float(np.var(truth, axis=0).mean()), rel=1e-5)


def test_idm_learns_linear_inverse_dynamics_on_held_out_trajectories():
    rng = np.random.default_rng(0)
    train = [linear_trajectory(e, rng=rng) for e in range(30)]
    held_out = [linear_trajectory(100 + e, rng=rng) for e in range(10)]
    model, report = train_inverse_dynamics(train, tiny_cfg(ensemble_size=2, steps=800), window=1, seed=0)

    error = action_error(model, held_out, [t.actions for t in held_out])
    assert error["mse"] < 0.02 and error["explained_variance"] > 0.9  # predicting 0 gives mse ~0.27
    assert len(report.val_episode_ids) == 3 and not set(report.val_episode_ids) & set(report.train_episode_ids)
    assert report.eval_steps == list(range(100, 801, 100)) and len(report.val_nll) == 8
    assert report.val_nll[-1] < report.val_nll[0]
    # the normaliser holds training statistics
    train_states = np.concatenate([t.observations for t in train if t.episode_id in report.train_episode_ids])
    np.testing.assert_allclose(model.normalizer.mean.numpy(), train_states.mean(0), rtol=1e-4, atol=1e-5)


def test_difference_inputs_recover_actions_hidden_below_the_spread_of_the_states():
    """Meta-World-like data: each action moves the state by ~1 % of the states' spread. The paper's encoding
    (standardised states) leaves that motion at the noise level of the input; the differences encoding puts it at
    unit scale, and the same network and budget then recover the actions."""
    rng = np.random.default_rng(0)

    def small_step_trajectory(episode):
        trajectory = linear_trajectory(episode, rng=rng)
        offset = rng.normal(scale=3.0, size=OBS_DIM).astype(np.float32)  # where the episode happens
        steps = np.diff(trajectory.observations, axis=0) * 0.01  # s' = s + 0.01 B a
        observations = offset + np.concatenate([np.zeros((1, OBS_DIM), np.float32), np.cumsum(steps, axis=0)])
        trajectory.observations = observations.astype(np.float32)
        return trajectory

    train = [small_step_trajectory(e) for e in range(30)]
    held_out = [small_step_trajectory(100 + e) for e in range(10)]

    def explained_variance(inputs):
        model, _ = train_inverse_dynamics(train, tiny_cfg(steps=600, inputs=inputs), window=1, seed=0)
        return action_error(model, held_out, [t.actions for t in held_out])["explained_variance"]

    assert explained_variance("differences") > 0.9
    assert explained_variance("states") < 0.5


def test_difference_encoding_is_the_anchor_state_and_standardised_steps():
    trajectories = [linear_trajectory(e, steps=12) for e in range(6)]
    model, _ = train_inverse_dynamics(trajectories, tiny_cfg(steps=1, val_fraction=0.0, inputs="differences"), window=2)
    observations = np.concatenate([t.observations for t in trajectories])
    steps = np.concatenate([np.diff(t.observations, axis=0) for t in trajectories])  # every s_{t+1} - s_t
    np.testing.assert_allclose(model.normalizer.mean.numpy(), observations.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.difference_normalizer.std.numpy(), steps.std(0), rtol=1e-4)

    windows = torch.as_tensor(state_windows(trajectories[0].observations, 2))  # (T, 5, D)
    encoded = model.encode(windows)  # (T, 5 * D)
    mean, std = model.normalizer.mean, model.normalizer.std
    step_mean, step_std = model.difference_normalizer.mean, model.difference_normalizer.std
    torch.testing.assert_close(encoded[:, :OBS_DIM], (windows[:, 2] - mean) / std)
    expected_steps = ((windows[:, 1:] - windows[:, :-1]) - step_mean) / step_std  # (T, 4, D)
    torch.testing.assert_close(encoded[:, OBS_DIM:], expected_steps.flatten(1))
    with pytest.raises(ValueError, match="idm.inputs"):
        IDMConfig(inputs="deltas")
    with pytest.raises(ValueError, match="input encoding"):
        InverseDynamicsModel(OBS_DIM, ACT_DIM, inputs="deltas")


def test_model_selection_restores_the_best_validation_weights():
    """Validation trajectories with the opposite inverse dynamics: the more the model learns, the worse
    validation gets, so the best weights are early ones and must be the ones returned."""
    train = [linear_trajectory(e) for e in range(20)]
    validation = [linear_trajectory(50 + e, flip=True) for e in range(4)]
    model, report = train_inverse_dynamics(train, tiny_cfg(steps=500, eval_every=50), validation=validation)

    assert report.best_step < 500 and report.val_nll[-1] > report.best_val_nll + 0.5
    assert report.best_val_nll == min(report.val_nll)
    again = evaluate_inverse_dynamics(model, validation)
    assert again["nll"] == pytest.approx(report.best_val_nll, rel=1e-5)
    assert again["mse"] == pytest.approx(report.best_val_mse, rel=1e-5)


def test_idm_training_is_deterministic_for_a_seed_and_handles_boundary_actions():
    trajectories = [linear_trajectory(e, steps=10) for e in range(4)]
    trajectories[0].actions[:3] = np.array([1.0, -1.0], np.float32)  # on the boundary: atanh must stay finite
    a, report_a = train_inverse_dynamics(trajectories, tiny_cfg(steps=30, eval_every=10), seed=5)
    b, _ = train_inverse_dynamics(trajectories, tiny_cfg(steps=30, eval_every=10), seed=5)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert np.isfinite(report_a.train_nll).all() and np.isfinite(report_a.val_nll).all()


def test_idm_is_evaluated_after_the_last_update_between_evaluations():
    """`eval_every` that does not divide `steps`: the final weights are still validated and may be selected."""
    trajectories = [linear_trajectory(e, steps=10) for e in range(4)]
    _, report = train_inverse_dynamics(trajectories, tiny_cfg(steps=25, eval_every=10), seed=0)
    assert report.eval_steps == [10, 20, 25] and len(report.val_nll) == len(report.train_nll) == 3
    assert report.best_val_nll == min(report.val_nll)


def test_idm_rejects_unusable_labelled_data():
    bad = linear_trajectory(0, steps=5)
    bad.actions = bad.actions * 3
    with pytest.raises(DatasetError, match=r"\[-1, 1\]"):
        train_inverse_dynamics([bad, linear_trajectory(1, steps=5)], tiny_cfg(steps=1))
    with pytest.raises(DatasetError, match="NaN"):
        train_inverse_dynamics([hide_actions(linear_trajectory(0, steps=5))], tiny_cfg(steps=1))
    with pytest.raises(ValueError, match="unknown idm config keys"):
        IDMConfig.from_mapping({"hiden_dims": [8]})


# ---------------------------------------------------------------- labelling and arms


@pytest.fixture
def split_and_model():
    trajectories = [linear_trajectory(e, steps=8) for e in range(10)]
    labelled, unlabelled = split_trajectories(trajectories, labelled_fraction=0.2, return_quantile=0.5, seed=0)
    torch.manual_seed(0)
    model = InverseDynamicsModel(OBS_DIM, ACT_DIM, hidden_dims=(16,), ensemble_size=2)  # untrained is enough
    return trajectories, labelled, unlabelled, model


def test_labelling_fills_only_missing_actions(split_and_model):
    _, labelled, unlabelled, model = split_and_model
    partial = linear_trajectory(99, steps=8)
    known = partial.actions.copy()
    partial.actions[[2, 5]] = np.nan
    out = label_trajectories(model, [labelled[0], unlabelled[0], partial])

    assert out[0] is labelled[0]  # fully labelled: passed through untouched
    filled = out[1]
    assert type(filled) is Trajectory and "true_actions" not in vars(filled)
    np.testing.assert_allclose(filled.actions, model.predict_actions(unlabelled[0].observations))
    assert np.abs(filled.actions).max() <= 1.0 and filled.infos["proxy_action"].all()
    assert not np.allclose(filled.actions, unlabelled[0].true_actions)  # an untrained model: no leak of truth

    proxy = model.predict_actions(partial.observations)
    missing = np.isin(np.arange(8), [2, 5])
    np.testing.assert_array_equal(out[2].actions[~missing], known[~missing])
    np.testing.assert_allclose(out[2].actions[missing], proxy[missing])
    np.testing.assert_array_equal(out[2].infos["proxy_action"], missing)


def test_labelling_fills_steps_with_only_some_action_dims_missing(split_and_model):
    _, _, _, model = split_and_model
    partial = linear_trajectory(99, steps=8)
    partial.actions[3, 0] = np.nan  # one unknown dim makes the step's action unknown
    (out,) = label_trajectories(model, [partial])
    assert np.isfinite(out.actions).all()
    np.testing.assert_array_equal(out.infos["proxy_action"], np.arange(8) == 3)
    np.testing.assert_allclose(out.actions[3], model.predict_actions(partial.observations)[3])


def test_action_error_matches_a_direct_computation(split_and_model):
    _, _, unlabelled, model = split_and_model
    truth = [t.true_actions for t in unlabelled]
    error = action_error(model, unlabelled, truth)
    diff = np.concatenate([model.predict_actions(t.observations) for t in unlabelled]) - np.concatenate(truth)
    assert error["mse"] == pytest.approx(float(np.mean(diff**2)), rel=1e-6)
    assert error["mae"] == pytest.approx(float(np.mean(np.abs(diff))), rel=1e-6)
    assert error["steps"] == 8 * len(unlabelled)


def test_arms_hold_the_right_trajectories(split_and_model):
    trajectories, labelled, unlabelled, model = split_and_model
    by_id = {t.episode_id: t for t in trajectories}
    ids = {t.episode_id for t in labelled}

    only = build_arm_dataset("labelled_only", labelled, unlabelled)
    assert [t.episode_id for t in only] == [t.episode_id for t in labelled]

    semi = build_arm_dataset("semi_supervised", labelled, unlabelled, model)
    oracle = build_arm_dataset("oracle", labelled, unlabelled)
    for dataset in (semi, oracle):
        assert sorted(t.episode_id for t in dataset) == list(range(10))
        assert all(np.isfinite(t.actions).all() for t in dataset)
        for t in dataset:
            np.testing.assert_array_equal(t.observations, by_id[t.episode_id].observations)
            if t.episode_id in ids:
                np.testing.assert_array_equal(t.actions, by_id[t.episode_id].actions)
    for t in semi:
        if t.episode_id not in ids:
            np.testing.assert_allclose(t.actions, model.predict_actions(t.observations))
    for t in oracle:
        np.testing.assert_array_equal(t.actions, by_id[t.episode_id].actions)
        assert not isinstance(t, ActionFreeTrajectory)

    with pytest.raises(ValueError, match="labelled_only, semi_supervised, oracle"):
        build_arm_dataset("proxy", labelled, unlabelled, model)
    with pytest.raises(ValueError, match="model"):
        build_arm_dataset("semi_supervised", labelled, unlabelled)


# ---------------------------------------------------------------- from the config


def test_default_config_loads_and_prepares_every_arm():
    cfg = OmegaConf.load(REPO / "configs" / "ssorl" / "default.yaml")
    assert IDMConfig.from_mapping(cfg.idm).hidden_dims == tuple(cfg.idm.hidden_dims)
    cfg.idm.merge_with({"hidden_dims": [32], "steps": 60, "eval_every": 20, "progress": False})
    trajectories = [linear_trajectory(e, steps=20) for e in range(20)]

    sizes = {}
    for arm in ARMS:
        cfg.arm = arm
        dataset, diagnostics = prepare_ssorl_dataset(trajectories, cfg, seed=1)
        sizes[arm] = len(dataset)
        assert diagnostics["num_labelled"] == 2 and diagnostics["num_unlabelled"] == 18
        assert diagnostics["labelled_return_max"] < 10
        assert all(np.isfinite(t.actions).all() for t in dataset)
        if arm == "semi_supervised":
            assert diagnostics["idm"]["eval_steps"] == [20, 40, 60]
            assert diagnostics["idm"]["best_step"] in (20, 40, 60) and len(diagnostics["idm"]["val_episode_ids"]) == 1
            assert diagnostics["proxy_action_steps"] == 18 * 20 and np.isfinite(diagnostics["proxy_action_mse"])
        else:
            assert "idm" not in diagnostics  # no IDM is trained for the other arms
        if arm.startswith("control_"):  # the stand-ins' error against the hidden actions, for diagnosis
            assert diagnostics["proxy_action_steps"] == 18 * 20
    assert sizes == {
        "labelled_only": 2,
        "semi_supervised": 20,
        "oracle": 20,
        "control_random": 20,
        "control_shuffled": 20,
    }

    with pytest.raises(ValueError, match="valid arms"):
        prepare_ssorl_dataset(trajectories, {"arm": "nope"})
    with pytest.raises(ValueError, match="unknown ssorl config keys"):
        prepare_ssorl_dataset(trajectories, {"labeled_fraction": 0.1})
    with pytest.raises(ValueError, match=re.escape("ssorl.window=2.5 (must be an integer)")):
        prepare_ssorl_dataset(trajectories, {"window": 2.5})


def test_ssorl_config_takes_the_yaml_defaults_and_nested_idm_settings():
    from omegaconf import OmegaConf

    from embodied_rl.labelling import IDMConfig
    from embodied_rl.pipelines.ssorl import SSORLConfig

    yaml = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "ssorl" / "default.yaml")
    # the dataclass defaults are the config file's, but for the progress bar (off in library use)
    assert SSORLConfig.from_mapping(yaml) == SSORLConfig(idm=IDMConfig(progress=True))
    cfg = SSORLConfig.from_mapping({"window": 2.0, "idm": {"steps": 5}})
    assert cfg.window == 2 and isinstance(cfg.window, int) and cfg.idm == IDMConfig(steps=5)
    with pytest.raises(ValueError, match="unknown idm config keys"):
        SSORLConfig.from_mapping({"idm": {"step": 5}})


# ---------------------------------------------------------------- an arm's dataset kept with its run


def test_saved_arm_dataset_rebuilds_the_same_episodes_actions_and_proxy_marks(tmp_path):
    trajectories = [linear_trajectory(e, steps=10 + e) for e in range(12)]  # distinct lengths
    cfg = {"arm": "semi_supervised", "labelled_fraction": 0.25, "idm": {"hidden_dims": [16], "steps": 20,
           "eval_every": 10, "progress": False}}  # fmt: skip
    dataset, _ = prepare_ssorl_dataset(trajectories, cfg, seed=2)
    path = tmp_path / "arm.npz"
    save_arm_dataset(path, dataset)
    assert [p.name for p in tmp_path.iterdir()] == ["arm.npz"]  # no temporary file left

    rebuilt = load_arm_dataset(list(reversed(trajectories)), path)  # matched by episode id, not position
    assert [t.episode_id for t in rebuilt] == [t.episode_id for t in dataset]
    for original, copy in zip(dataset, rebuilt):
        np.testing.assert_array_equal(copy.actions, original.actions)  # proxies where they were, true actions else
        np.testing.assert_array_equal(copy.observations, original.observations)
        np.testing.assert_array_equal(copy.rewards, original.rewards)
        assert ("proxy_action" in copy.infos) == ("proxy_action" in original.infos)
        if "proxy_action" in original.infos:
            np.testing.assert_array_equal(copy.infos["proxy_action"], original.infos["proxy_action"])
    assert sum("proxy_action" in t.infos for t in rebuilt) == 9  # the 9 action-free trajectories
    proxy_labelled = [t for t in rebuilt if "proxy_action" in t.infos]
    assert not any(np.array_equal(t.actions, trajectories[t.episode_id].actions) for t in proxy_labelled)


def test_saved_arm_dataset_refuses_another_source_dataset(tmp_path):
    trajectories = [linear_trajectory(e, steps=10) for e in range(4)]
    path = tmp_path / "arm.npz"
    save_arm_dataset(path, trajectories)
    with pytest.raises(DatasetError, match="episode 3 has 10 steps, return 3; the dataset has no such episode"):
        load_arm_dataset(trajectories[:3], path)
    with pytest.raises(DatasetError, match="episode 0 has 10 steps, return 0; the dataset has 12 steps, return 0"):
        load_arm_dataset([linear_trajectory(0, steps=12), *trajectories[1:]], path)
    rebuilt_tier = linear_trajectory(1, steps=10)  # same id and length, other rewards: another dataset
    rebuilt_tier.rewards = rebuilt_tier.rewards + 1.0
    with pytest.raises(DatasetError, match="episode 1 has 10 steps, return 1; the dataset has 10 steps, return 11"):
        load_arm_dataset([trajectories[0], rebuilt_tier, *trajectories[2:]], path)

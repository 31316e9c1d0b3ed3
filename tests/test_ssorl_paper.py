"""SS-ORL on the paper's terms (issue 24): the reference code's window, dropout and normalisation over all states,
the IDM's held-out split, the control arms, and the `paper` configuration next to ours.

Synthetic linear trajectories (tests/test_ssorl.py) for the library parts; one tiny run of experiment=ssorl_paper
on a Meta-World dataset of six short episodes for the configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_ssorl import ACT_DIM, OBS_DIM, linear_trajectory, tiny_cfg

from embodied_rl.labelling import IDMConfig, InverseDynamicsModel, state_windows, train_inverse_dynamics
from embodied_rl.labelling.inverse_dynamics import split_validation_trajectories, window_offsets
from embodied_rl.pipelines.ssorl import (
    ARMS,
    SSORLConfig,
    build_arm_dataset,
    control_actions,
    hide_actions,
    prepare_ssorl_dataset,
    split_trajectories,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- the reference code's window


def test_past_window_is_k_past_states_then_s_t_and_s_t_plus_1():
    assert window_offsets(0, "past").tolist() == [0, 1]
    assert window_offsets(1, "past").tolist() == [-1, 0, 1] == window_offsets(1).tolist()
    assert window_offsets(2, "past").tolist() == [-2, -1, 0, 1]  # no s_{t+2}, unlike the symmetric window
    assert window_offsets(2).tolist() == [-2, -1, 0, 1, 2]
    obs = np.arange(5, dtype=np.float32)[:, None]  # (T+1, 1): state j holds j
    assert state_windows(obs, 2, "past")[..., 0].tolist() == [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4]]
    with pytest.raises(ValueError, match="window mode"):
        window_offsets(1, "future")
    with pytest.raises(ValueError, match="window_mode"):
        SSORLConfig(window_mode="future")


def test_idm_with_the_past_window_trains_and_labels_through_its_own_windows():
    trajectories = [linear_trajectory(e, steps=30) for e in range(8)]
    model, _ = train_inverse_dynamics(trajectories, tiny_cfg(steps=50, eval_every=25), window=2, window_mode="past")
    assert model.num_states == 4 and model.net.layers[0].in_dim == 4 * OBS_DIM
    observations = trajectories[0].observations
    windows = torch.as_tensor(state_windows(observations, 2, "past"))  # (T, 4, D)
    np.testing.assert_allclose(model.predict_actions(observations), model.predict(windows).detach().numpy(), atol=1e-6)


# ---------------------------------------------------------------- dropout


def test_dropout_sits_before_the_output_layer_and_acts_in_training_only():
    model = InverseDynamicsModel(OBS_DIM, ACT_DIM, hidden_dims=(64, 64), dropout=0.5, inputs="states")
    layers = list(model.net.layers)
    assert isinstance(layers[-2], torch.nn.Dropout) and layers[-2].p == 0.5
    assert sum(isinstance(layer, torch.nn.Dropout) for layer in layers) == 1
    assert not any(isinstance(m, torch.nn.Dropout) for m in InverseDynamicsModel(OBS_DIM, ACT_DIM).modules())
    windows = torch.randn(16, 3, OBS_DIM)
    model.train()
    assert not torch.equal(model.distribution(windows).loc, model.distribution(windows).loc)  # stochastic
    model.eval()
    assert torch.equal(model.distribution(windows).loc, model.distribution(windows).loc)


def test_trained_idm_with_dropout_labels_deterministically():
    trajectories = [linear_trajectory(e, steps=30) for e in range(8)]
    model, _ = train_inverse_dynamics(trajectories, tiny_cfg(steps=50, eval_every=25, dropout=0.1), window=1)
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules()) and not model.training
    observations = trajectories[0].observations
    np.testing.assert_array_equal(model.predict_actions(observations), model.predict_actions(observations))
    with pytest.raises(ValueError, match="idm.dropout"):
        IDMConfig(dropout=1.0)


# ---------------------------------------------------------------- normalisation over all states


def test_normalisation_over_all_states_reads_the_action_free_trajectories_states():
    trajectories = [linear_trajectory(e, steps=20) for e in range(10)]
    for i in range(5, 10):  # far-away states, and no actions: only normalize_over="all" sees them
        trajectories[i].observations[:] += 50.0
    labelled, unlabelled = trajectories[:5], [hide_actions(t) for t in trajectories[5:]]
    cfg = tiny_cfg(steps=20, eval_every=10, val_fraction=0.0)
    own, report_own = train_inverse_dynamics(labelled, cfg, window=1)
    every = labelled + unlabelled
    cfg_all = tiny_cfg(steps=20, eval_every=10, val_fraction=0.0, normalize_over="all")
    over_all, report_all = train_inverse_dynamics(labelled, cfg_all, window=1, normalization_trajectories=every)

    labelled_states = np.concatenate([t.observations for t in labelled])
    all_states = np.concatenate([t.observations for t in every])
    all_differences = np.concatenate([np.diff(t.observations, axis=0) for t in every])
    np.testing.assert_allclose(own.normalizer.mean.numpy(), labelled_states.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(over_all.normalizer.mean.numpy(), all_states.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(over_all.difference_normalizer.mean.numpy(), all_differences.mean(0), atol=1e-4)
    assert report_own.num_normalization_states == len(labelled_states)
    assert report_all.num_normalization_states == len(all_states) and report_all.normalize_over == "all"
    with pytest.raises(ValueError, match="normalization_trajectories"):
        train_inverse_dynamics(labelled, cfg_all, window=1)
    with pytest.raises(ValueError, match="idm.normalize_over"):
        IDMConfig(normalize_over="unlabelled")


def test_pipeline_fits_the_idm_statistics_on_every_trajectory_of_the_dataset(monkeypatch):
    import embodied_rl.pipelines.ssorl as ssorl

    trajectories = [linear_trajectory(e, steps=20) for e in range(20)]
    seen = {}
    real = ssorl.train_inverse_dynamics

    def spy(labelled, cfg, **kwargs):
        model, report = real(labelled, cfg, **kwargs)
        seen["mean"] = model.normalizer.mean.numpy().copy()
        return model, report

    monkeypatch.setattr(ssorl, "train_inverse_dynamics", spy)
    idm = {"hidden_dims": [16], "steps": 20, "eval_every": 10, "normalize_over": "all"}
    prepare_ssorl_dataset(trajectories, {"idm": idm}, seed=0)
    all_states = np.concatenate([t.observations for t in trajectories])
    np.testing.assert_allclose(seen["mean"], all_states.mean(0), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- held-out split for model selection


def test_validation_split_holds_out_the_fraction_and_at_least_the_minimum():
    trajectories = [linear_trajectory(e, steps=5) for e in range(20)]
    sizes = {
        (fraction, minimum): len(split_validation_trajectories(trajectories, fraction, minimum, seed=0)[1])
        for fraction, minimum in [(0.1, 1), (0.2, 1), (0.1, 5), (0.0, 5), (0.5, 30)]
    }
    assert sizes == {(0.1, 1): 2, (0.2, 1): 4, (0.1, 5): 5, (0.0, 5): 0, (0.5, 30): 19}  # never all of them
    train, val = split_validation_trajectories(trajectories, 0.2, 2, seed=3)
    assert {t.episode_id for t in train} | {t.episode_id for t in val} == set(range(20))
    assert not {t.episode_id for t in train} & {t.episode_id for t in val}
    again = split_validation_trajectories(trajectories, 0.2, 2, seed=3)[1]
    assert [t.episode_id for t in again] == [t.episode_id for t in val]


def test_idm_report_holds_the_validation_curve_on_the_configured_split():
    trajectories = [linear_trajectory(e, steps=20) for e in range(10)]
    cfg = tiny_cfg(steps=60, eval_every=20, val_fraction=0.1, min_val_trajectories=3)
    _, report = train_inverse_dynamics(trajectories, cfg, window=1, seed=0)
    assert len(report.val_episode_ids) == 3 and report.num_val_transitions == 3 * 20
    assert report.eval_steps == [20, 40, 60] and len(report.val_nll) == len(report.val_mse) == 3
    assert report.best_val_nll == min(report.val_nll)
    summary = report.curve_summary()
    assert "3 held-out trajectories" in summary and f"best {report.best_val_nll:.4g}" in summary


# ---------------------------------------------------------------- control arms


def _split(n=20, steps=25):
    trajectories = [linear_trajectory(e, steps=steps) for e in range(n)]
    return split_trajectories(trajectories, labelled_fraction=0.2, return_quantile=0.5, seed=0)


def test_control_random_actions_are_uniform_in_the_action_space_and_not_the_hidden_ones():
    labelled, unlabelled = _split(n=40, steps=100)
    low, high = np.array([0.0, -2.0]), np.array([1.0, 2.0])
    stand_ins = control_actions("control_random", labelled, unlabelled, seed=1, action_low=low, action_high=high)
    assert [a.shape for a in stand_ins] == [(len(t), ACT_DIM) for t in unlabelled]
    flat = np.concatenate(stand_ins)  # (N, A)
    assert (flat >= low).all() and (flat <= high).all()
    np.testing.assert_allclose(flat.mean(0), (low + high) / 2, atol=0.05)  # uniform: mean and variance
    np.testing.assert_allclose(flat.var(0), (high - low) ** 2 / 12, rtol=0.08)
    truth = np.concatenate([t.true_actions for t in unlabelled])
    assert abs(np.corrcoef(flat[:, 1], truth[:, 1])[0, 1]) < 0.05  # unrelated to the hidden actions
    again = control_actions("control_random", labelled, unlabelled, seed=1, action_low=low, action_high=high)
    assert all(np.array_equal(a, b) for a, b in zip(stand_ins, again))


def test_control_shuffled_actions_are_a_balanced_permutation_of_the_labelled_actions():
    labelled, unlabelled = _split(n=20, steps=25)
    for t in unlabelled:
        t.true_actions = None  # the hidden actions are never read
    stand_ins = control_actions("control_shuffled", labelled, unlabelled, seed=0)
    pool = np.concatenate([t.actions for t in labelled])  # (n_l, A)
    flat = np.concatenate(stand_ins)  # (n_u, A)
    assert [len(a) for a in stand_ins] == [len(t) for t in unlabelled]
    # every stand-in is a labelled action, and each labelled action is used floor(n_u/n_l) or that + 1 times
    rows = {tuple(row): i for i, row in enumerate(pool)}
    counts = np.bincount([rows[tuple(row)] for row in flat], minlength=len(pool))
    assert counts.min() >= len(flat) // len(pool) and counts.max() <= -(-len(flat) // len(pool))
    assert counts.sum() == len(flat)
    # in a shuffled order, not the pool's
    assert not np.array_equal(flat[: len(pool)], pool)


def test_control_arms_keep_the_labelled_data_and_mark_the_stand_ins():
    labelled, unlabelled = _split()
    for arm in ("control_random", "control_shuffled"):
        stand_ins = control_actions(arm, labelled, unlabelled, seed=0)
        dataset = build_arm_dataset(arm, labelled, unlabelled, control=stand_ins)
        assert dataset[: len(labelled)] == labelled
        for trajectory, filled, source in zip(dataset[len(labelled) :], stand_ins, unlabelled):
            assert type(trajectory).__name__ == "Trajectory" and trajectory.infos["proxy_action"].all()
            np.testing.assert_array_equal(trajectory.actions, filled)
            np.testing.assert_array_equal(trajectory.observations, source.observations)
        with pytest.raises(ValueError, match="stand-in actions"):
            build_arm_dataset(arm, labelled, unlabelled)
    with pytest.raises(ValueError, match="not a control arm"):
        control_actions("oracle", labelled, unlabelled)


def test_control_arms_from_the_config_train_no_idm_and_report_the_stand_ins_error():
    trajectories = [linear_trajectory(e, steps=40) for e in range(30)]
    semi, diagnostics_semi = prepare_ssorl_dataset(
        trajectories, {"idm": {"hidden_dims": [32, 32], "steps": 300, "eval_every": 100, "lr": 3e-3}}, seed=0
    )
    for arm in ("control_random", "control_shuffled"):
        dataset, diagnostics = prepare_ssorl_dataset(trajectories, {"arm": arm}, seed=0)
        assert "idm" not in diagnostics and len(dataset) == len(semi)
        # the same trajectories as the semi-supervised arm, other actions on the action-free steps
        assert [t.episode_id for t in dataset] == [t.episode_id for t in semi]
        assert diagnostics["proxy_action_explained_variance"] < 0.05  # no information about the hidden actions
        assert not np.allclose(dataset[-1].actions, semi[-1].actions)
    assert diagnostics_semi["proxy_action_explained_variance"] > 0.5
    assert {"control_random", "control_shuffled"} <= set(ARMS)


# ---------------------------------------------------------------- the paper configuration next to ours


def test_paper_config_is_the_reference_codes_and_ours_stays_ours():
    paper = SSORLConfig.from_mapping(OmegaConf.load(REPO / "configs" / "ssorl" / "paper.yaml"))
    assert paper.window == 1 and paper.window_mode == "past"
    idm = paper.idm
    assert idm.hidden_dims == (1024, 1024) and idm.dropout == 0.1 and idm.lr == 1e-4 and idm.batch_size == 1024
    assert idm.inputs == "states" and idm.normalize_over == "all" and idm.ensemble_size == 1
    assert idm.val_fraction == 0.1 and idm.steps == 100 and idm.eval_every == 10
    ours = SSORLConfig.from_mapping(OmegaConf.load(REPO / "configs" / "ssorl" / "default.yaml"))
    assert ours.window_mode == "symmetric" and ours.idm.inputs == "differences" and ours.idm.dropout == 0.0
    assert ours.idm.normalize_over == "labelled" and ours.idm.hidden_dims == (256, 256)


def test_paper_experiment_composes_td3bc_at_the_reference_budget():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=ssorl_paper", "ssorl.arm=control_random"])
        ours = compose("config", overrides=["experiment=ssorl"])
    assert cfg.agent.name == "td3bc" and cfg.trainer.kind == "offline"
    assert cfg.trainer.total_updates == 200_000 and cfg.trainer.batch_size == 5120
    assert cfg.trainer.reward.normalize == "none" and cfg.ssorl.window_mode == "past"
    assert cfg.name == "ssorl_paper_td3bc_medium-replay_control_random_k1"
    assert ours.agent.name == "iql" and ours.ssorl.idm.inputs == "differences"


PAPER_TINY = [
    "experiment=ssorl_paper",
    "env=metaworld",
    "env.task=metaworld/reach-v3",
    "env.time_limit=30",
    "env.shadows=false",
    "trainer.dataset=tiny",
    "agent.hidden_dims=[32,32]",
    "trainer.total_updates=20",
    "trainer.batch_size=32",
    "trainer.eval_every=20",
    "trainer.eval_episodes=1",
    "trainer.eval_videos=0",
    "trainer.checkpoint_every=20",
    "trainer.progress=false",
    "logging.console=false",
    "device=cpu",
    "ssorl.labelled_fraction=0.34",
    "ssorl.idm.hidden_dims=[32,32]",
    "ssorl.idm.steps=20",
    "ssorl.idm.progress=false",
]


@pytest.mark.parametrize("arm", ["semi_supervised", "control_random"])
def test_paper_experiment_runs_end_to_end(tiny_dataset, tmp_path, arm):
    from script_helpers import train_in_process

    run_dir = tmp_path / arm
    results = train_in_process([*PAPER_TINY, f"ssorl.arm={arm}", f"run_dir={run_dir}"])
    assert results["updates"] == 20
    diagnostics = json.loads((run_dir / "ssorl.json").read_text())
    assert diagnostics["arm"] == arm and diagnostics["num_labelled"] == 2
    stored = OmegaConf.load(run_dir / "config.yaml")
    assert stored.agent.name == "td3bc" and stored.ssorl.idm.normalize_over == "all"
    if arm == "semi_supervised":
        idm = diagnostics["idm"]
        assert idm["normalize_over"] == "all" and idm["num_normalization_states"] == 6 * 31
        assert idm["eval_steps"] == [10, 20] and len(idm["val_nll"]) == 2
    else:
        assert "idm" not in diagnostics and not (run_dir / "idm").exists()
        saved = np.load(run_dir / "ssorl_dataset.npz")
        actions = saved["actions"][saved["proxy_action"]]
        assert len(actions) == 4 * 30 and (np.abs(actions) <= 1).all()

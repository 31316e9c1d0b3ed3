"""The PEARL pipeline (`experiment=pearl`) as a user runs it, at tiny budgets: every arm, its intermediates, resume
without training the reward model again, and one clear error (no run directory left) for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import train_in_process

from embodied_rl.data import DatasetError, dataset_id_for, load_trajectories
from embodied_rl.trainers.builders import ConfigError

SOURCE, TARGET = "metaworld/reach-v3", "metaworld/button-press-v3"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Six 30-step episodes of the noisy scripted expert on each task (tier name `tiny`), with references."""
    from embodied_rl.data import collect_dataset
    from embodied_rl.envs import make_env
    from embodied_rl.pipelines.offline_datasets import make_behaviour_policy

    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        for task in (SOURCE, TARGET):
            env = make_env(task=task, time_limit=30)
            policy = make_behaviour_policy("scripted", env, task, noise_std=0.5, seed=0)
            collect_dataset(
                env, policy, dataset_id_for(task, "tiny"), episodes=6, progress=False, metadata={"ref_min_score": 0.0}
            )
            env.close()
        yield root


def pearl_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        "experiment=pearl",
        f"source.task={SOURCE}",
        "source.dataset=tiny",
        f"target.task={TARGET}",
        "target.dataset=tiny",
        "env.time_limit=30",
        "env.shadows=false",
        "pearl.segment_length=10",
        "pearl.source_pairs=12",
        "pearl.target_pairs=12",
        "pearl.few_labels=4",
        "pearl.reward.steps=20",
        "pearl.reward.batch_size=8",
        "pearl.reward.eval_every=10",
        "pearl.reward.embed_dim=16",
        "pearl.reward.progress=false",
        "agent.hidden_dims=[16,16]",
        "trainer.total_updates=20",
        "trainer.batch_size=16",
        "trainer.eval_every=10",
        "trainer.eval_episodes=1",
        "trainer.eval_videos=0",
        "trainer.checkpoint_every=10",
        "trainer.log_every=10",
        "trainer.progress=false",
        "logging.console=false",
        "logging.tensorboard=false",
        "device=cpu",
        f"run_dir={run_dir}",
        *extra,
    ]


def test_pearl_transfers_labels_trains_a_robust_reward_and_relabels_the_target(datasets, tmp_path):
    run_dir = tmp_path / "pearl"
    results = train_in_process(pearl_args(run_dir))
    assert results["updates"] == 20 and results["dataset"] == dataset_id_for(TARGET, "tiny")
    report = json.loads((run_dir / "pearl.json").read_text())
    assert report["arm"] == "pearl" and report["target"] == TARGET and report["source"]["task"] == SOURCE
    assert report["num_source_pairs"] == 12 and report["num_transferred"] == 12
    assert 0.0 <= report["transfer_accuracy"] <= 1.0
    assert report["reward_model"]["robust"] is True and report["reward_model"]["kind"] == "transformer"
    assert set(report["return_correlation"]) == {"pearson", "spearman"}
    coupling = np.load(run_dir / "pearl" / "coupling.npy")
    assert coupling.shape == (24, 24) and coupling.sum() == pytest.approx(1.0, abs=1e-6)
    for name in ("source_pairs.npz", "target_pairs.npz", "labelled_pairs.npz", "reward_model.pt"):
        assert (run_dir / "pearl" / name).exists(), name
    assert (run_dir / "reward" / "metrics.csv").exists()  # the reward model's curves, on their own axis
    from embodied_rl.data.preferences import PreferencePairs

    labelled = PreferencePairs.load(run_dir / "pearl" / "labelled_pairs.npz")
    assert labelled.source == f"transferred:{SOURCE}" and ((labelled.label >= 0) & (labelled.label <= 1)).all()


def test_pearl_resume_relabels_with_the_saved_reward_model_without_training_it_again(datasets, tmp_path, monkeypatch):
    import embodied_rl.pipelines.pearl as pearl

    run_dir = tmp_path / "pearl"
    first = train_in_process(pearl_args(run_dir, "pearl.arm=pt_cpa"))
    coupling = np.load(run_dir / "pearl" / "coupling.npy")

    def no_training(*args, **kwargs):
        raise AssertionError("the reward model was trained again on resume")

    def no_transport(*args, **kwargs):
        raise AssertionError("the coupling was computed again on resume")

    monkeypatch.setattr(pearl, "train_reward_model", no_training)
    monkeypatch.setattr(pearl, "gw_coupling", no_transport)
    more = train_in_process(pearl_args(run_dir, "pearl.arm=pt_cpa", "resume=true", "trainer.total_updates=30"))
    assert more["updates"] == 30 and first["updates"] == 20
    np.testing.assert_array_equal(np.load(run_dir / "pearl" / "coupling.npy"), coupling)


@pytest.mark.parametrize("arm", ["oracle", "few_labels"])
def test_label_arms_train_on_scripted_target_labels(datasets, tmp_path, arm):
    run_dir = tmp_path / arm
    train_in_process(pearl_args(run_dir, f"pearl.arm={arm}"))
    report = json.loads((run_dir / "pearl.json").read_text())
    assert report["num_labelled_pairs"] == (12 if arm == "oracle" else 4)
    assert "transfer_accuracy" not in report and not (run_dir / "pearl" / "coupling.npy").exists()


def test_zero_and_env_reward_arms_train_on_zeros_and_on_the_datasets_rewards(datasets, tmp_path, monkeypatch):
    from embodied_rl import data

    trained_on = {}
    transitions = data.transitions_from_trajectories

    def spy(trajectories, **kwargs):  # what the offline trainer gets (the run imports it at call time)
        trained_on["rewards"] = np.concatenate([t.rewards for t in trajectories])
        return transitions(trajectories, **kwargs)

    monkeypatch.setattr(data, "transitions_from_trajectories", spy)
    env_rewards = np.concatenate([t.rewards for t in load_trajectories(dataset_id_for(TARGET, "tiny"))])
    train_in_process(pearl_args(tmp_path / "zero", "pearl.arm=zero_reward"))
    assert (trained_on["rewards"] == 0).all() and env_rewards.any()
    train_in_process(pearl_args(tmp_path / "env", "pearl.arm=env_reward"))
    np.testing.assert_array_equal(trained_on["rewards"], env_rewards)


@pytest.mark.parametrize(
    "override, error, kind",
    [
        ("source.task=metaworld/no-such-task-v3", "no-such-task-v3", Exception),
        ("pearl.segment_length=31", "pearl.segment_length=31 is longer than every episode", DatasetError),
        ("pearl.arm=best", "pearl.arm='best' is not one of", ConfigError),
    ],
)
def test_bad_input_is_one_clear_error_and_leaves_no_run_directory(datasets, tmp_path, override, error, kind):
    with pytest.raises(kind, match=error):
        train_in_process(pearl_args(tmp_path / "r", override))
    assert not (tmp_path / "r").exists()


def test_a_source_label_file_of_the_wrong_length_is_refused_before_any_output(datasets, tmp_path):
    labels = tmp_path / "labels.npz"
    np.savez(labels, start_indices=np.array([0, 5]), start_indices_2=np.array([40]), labels=np.array([1.0, 0.0]))
    with pytest.raises(DatasetError):
        train_in_process(pearl_args(tmp_path / "r", f"pearl.source_labels={labels}"))
    assert not (tmp_path / "r").exists()


def test_the_config_group_mirrors_the_settings_dataclasses():
    """configs/pearl/default.yaml holds every setting at its code default (the reward model: a transformer)."""
    import dataclasses

    from omegaconf import OmegaConf

    from embodied_rl.pipelines.pearl import PEARLConfig

    config = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs" / "pearl" / "default.yaml"))
    defaults = PEARLConfig()
    assert set(config) == {f.name for f in dataclasses.fields(PEARLConfig)} - {"source"}
    from embodied_rl.rewards.preference import RewardModelConfig

    assert RewardModelConfig.from_mapping(config["reward"]) == defaults.reward
    assert config["teacher"] == defaults.teacher.as_dict()
    assert {k: v for k, v in config.items() if k not in ("reward", "teacher")} == {
        k: v for k, v in dataclasses.asdict(defaults).items() if k not in ("reward", "teacher", "source")
    }


def test_transfer_accuracy_script_prints_a_row_per_pair_and_solver(datasets, tmp_path, capsys):
    from script_helpers import load_script

    out = tmp_path / "rows.json"
    argv = [f"--pairs={SOURCE}:{SOURCE},{SOURCE}:{TARGET}", "--dataset=tiny", "--num-pairs=12", "--methods=exact"]
    assert load_script("pearl_transfer").main([*argv, f"--out={out}", "pearl.segment_length=10"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["source"], r["target"], r["gw_method"]) for r in rows] == [
        (SOURCE, SOURCE, "exact"),
        (SOURCE, TARGET, "exact"),
    ]
    assert all(0 <= r["transfer_accuracy"] <= 1 and r["num_transferred"] == 12 for r in rows)
    with pytest.raises(SystemExit) as exit_:
        load_script("pearl_transfer").main([*argv, "--pairs=reach-v3:no-such-v3"])
    assert exit_.value.code == 2


def test_transfer_script_judges_plain_and_robust_reward_models_on_the_target(datasets, tmp_path):
    from script_helpers import load_script

    out = tmp_path / "rows.json"
    argv = [f"--pairs={SOURCE}:{TARGET}", "--dataset=tiny", "--num-pairs=12", "--methods=fast", "--eval-pairs=8"]
    tiny = ["pearl.segment_length=10", "pearl.reward.steps=4", "pearl.reward.eval_every=2", "pearl.teacher.mistake=0.2"]
    assert load_script("pearl_transfer").main([*argv, "--rewards=plain,robust", f"--out={out}", *tiny]) == 0
    (row,) = json.loads(out.read_text())
    assert row["teacher"]["mistake"] == 0.2
    for kind in ("plain", "robust"):
        judged = row[f"reward_{kind}"]
        assert set(judged) == {"val_accuracy", "true_accuracy", "return_spearman", "return_pearson"}
        assert 0 <= judged["true_accuracy"] <= 1 and -1 <= judged["return_spearman"] <= 1
    assert row["reward_plain"] != row["reward_robust"]  # two different models
    with pytest.raises(SystemExit) as exit_:
        load_script("pearl_transfer").main([*argv, "--rewards=robust,fancy"])
    assert exit_.value.code == 2

"""RePo's test-time adaptation (`experiment=repo_adapt`) as a user runs it, at tiny sizes: a RePo run on the train
distractors, then its encoder adapted to the test split (evaluations before and after with videos, the adapted
checkpoint read back, everything but the encoder bitwise unchanged), source frames from the replay or collected,
and bad checkpoints refused before any output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from script_helpers import train_in_process
from test_repo_run import repo_args

from embodied_rl.pipelines.repo_adapt import RePoAdaptConfig
from embodied_rl.trainers.builders import ConfigError

QUIET = ["device=cpu", "trainer.progress=false", "logging.tensorboard=false", "logging.console=false"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A tiny RePo run on dmc/walker-walk pixels with the train distractors, its replay in the checkpoint."""
    run_dir = tmp_path_factory.mktemp("repo") / "source"
    train_in_process(repo_args(run_dir, "repo.test_split=false"))  # the RePo run tests' tiny run
    return run_dir


def adapt_args(checkpoint, *extra: str) -> list[str]:
    return [
        "experiment=repo_adapt",
        f"checkpoint={checkpoint}",
        "repo_adapt.env_steps=40",
        "repo_adapt.collect_every=20",
        "repo_adapt.updates_per_collect=2",
        "repo_adapt.eval_episodes=1",
        "repo_adapt.eval_videos=1",
        "repo_adapt.source_observations=50",
        "repo_adapt.adaptation.batch_size=8",
        "repo_adapt.adaptation.paired_batch_size=8",
        "repo_adapt.adaptation.encoder_lr=1e-2",  # large enough to move every encoder tensor in 4 updates
        "repo_adapt.adaptation.discriminator_hidden_dims=[16]",
        "repo_adapt.adaptation.density_ratio_hidden_dims=[16]",
        "repo_adapt.adaptation.discriminator_latent_dim=8",
        *QUIET,
        *extra,
    ]


def agent_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["agent"]


def test_adaptation_run_trains_only_the_encoder(source_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory: runs/repo_adapt/<the checkpoint's task>/seed<seed>
    results = train_in_process(adapt_args(source_run, "seed=3"))
    run_dir = tmp_path / "runs" / "repo_adapt" / "dmc" / "walker-walk" / "seed3"
    report = json.loads((run_dir / "repo_adapt.json").read_text())

    # before / after on the test split, the source split too, each with its video
    for which, folder in [
        ("before", "eval_before"),
        ("after", "eval_after"),
        ("source_before", "eval_source_before"),
        ("source_after", "eval_source_after"),
    ]:
        assert report[which]["episodes"] == 1 and "return_mean" in report[which]
        assert [p.name for p in (run_dir / folder).glob("*.mp4")] == ["episode_000.mp4"]
    assert (report["source_split"], report["target_split"]) == ("train", "test")
    assert report["budget"]["source_frames_from"] == "replay" and report["budget"]["source_frames"] == 50
    assert report["budget"]["updates"] == 4 and report["adaptation"]["last"]["updates"] == 4
    assert "calibration_loss" in report["adaptation"]["last"]
    assert results["final"]["step"] == 40 and results["final"]["return_mean"] == report["after"]["return_mean"]
    assert json.loads((run_dir / "results.json").read_text())["best"] is not None

    # the run's config is the checkpoint's env on the test split and its agent: scripts/evaluate.py rebuilds it
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    source_config = yaml.safe_load((source_run / "config.yaml").read_text())
    assert config["env"] == {**source_config["env"], "distractors": "test", "seed": 3}
    assert config["agent"] == source_config["agent"]

    # only the encoder changed, bitwise
    before, after = agent_state(source_run), agent_state(run_dir)
    for part in ("world_model", "actor", "value"):
        for key, value in before[part].items():
            if part == "world_model" and key.startswith("encoder."):
                assert not torch.equal(value, after[part][key]), f"{part}.{key} did not adapt"
            else:
                assert torch.equal(value, after[part][key]), f"{part}.{key} changed"
    assert torch.equal(before["log_beta"], after["log_beta"])

    # the adapted checkpoint is a run checkpoint: load_agent reads it, a resume of the finished run does nothing
    from embodied_rl.envs import make_env
    from embodied_rl.trainers.loading import load_agent

    env = make_env(config["env"])
    try:
        agent, _, ckpt = load_agent(run_dir, env=env)
    finally:
        env.close()
    assert ckpt["step"] == 40
    for key, value in agent.encoder.state_dict().items():
        assert torch.equal(value, after["world_model"][f"encoder.{key}"])
    again = train_in_process(adapt_args(source_run, "seed=3", "resume=true"))
    assert again["final"] == results["final"]


def test_source_frames_collected_without_replay(source_run, tmp_path):
    """A checkpoint saved with trainer.save_replay=false: the source frames come from the policy on the source
    split; paired=false adapts by support alignment alone."""
    source = tmp_path / "no_replay"
    shutil.copytree(source_run, source)
    ckpt = torch.load(source / "checkpoints" / "latest.pt", weights_only=False)
    del ckpt["buffer"]
    (source / "checkpoints" / "latest.pt").unlink()  # a hard link to the step file: replace, do not write through
    torch.save(ckpt, source / "checkpoints" / "latest.pt")
    run_dir = tmp_path / "adapt"
    extra = ["repo_adapt.paired=false", "repo_adapt.source_collect_steps=30", "repo_adapt.eval_videos=0"]
    train_in_process(adapt_args(source, f"run_dir={run_dir}", "repo_adapt.source_eval=false", *extra))
    report = json.loads((run_dir / "repo_adapt.json").read_text())
    assert report["budget"]["source_frames_from"] == "collected" and report["budget"]["source_frames"] == 30
    assert "calibration_loss" not in report["adaptation"]["last"] and report["budget"]["paired_batch_size"] == 0
    assert "source_after" not in report and not (run_dir / "eval_before").exists()


def edited_run(source_run: Path, folder: Path, **env_or_agent) -> Path:
    """A copy of the source run whose config.yaml has `section.key` values replaced."""
    shutil.copytree(source_run, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for dotted, value in env_or_agent.items():
        section, key = dotted.split("__")
        config[section][key] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.parametrize(
    ("checkpoint", "edits", "message"),
    [
        ("missing", None, "no such run directory"),
        (None, None, "needs checkpoint="),
        ("sac", {"agent__name": "sac"}, "holds an agent=sac run, not a RePo agent"),
        ("clean", {"env__distractors": None}, "trained without distractors"),
        ("test_split", {"env__distractors": "test"}, "no shift to adapt to"),
    ],
)
def test_bad_checkpoints_are_refused_before_any_output(source_run, tmp_path, checkpoint, edits, message):
    if edits is not None:
        checkpoint = edited_run(source_run, tmp_path / checkpoint, **edits)
    elif checkpoint is not None:
        checkpoint = tmp_path / checkpoint
    run_dir = tmp_path / "adapt"
    args = adapt_args("null" if checkpoint is None else checkpoint, f"run_dir={run_dir}")
    with pytest.raises(ConfigError, match=message):
        train_in_process(args)
    assert not run_dir.exists()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="adaptation.steps is not a setting"):
        RePoAdaptConfig.from_mapping({"adaptation": {"steps": 5}})
    with pytest.raises(ValueError, match="collect_every=50 > env_steps=10"):
        RePoAdaptConfig.from_mapping({"env_steps": 10, "collect_every": 50})
    with pytest.raises(ValueError, match="unknown repo_adapt.adaptation config keys"):
        RePoAdaptConfig.from_mapping({"adaptation": {"encoder_learning_rate": 1e-3}})
    with pytest.raises(ValueError, match="batch_size"):
        RePoAdaptConfig.from_mapping({"adaptation": {"batch_size": 2.5}})
    cfg = RePoAdaptConfig.from_mapping({"env_steps": 1000, "collect_every": 300, "updates_per_collect": 7})
    assert cfg.updates == 21


def test_run_is_named_after_the_checkpoints_task(source_run, tmp_path):
    """The run directory and config.yaml's env / agent follow the checkpoint (a .pt file here), not the defaults."""
    from embodied_rl.pipelines.base import pipeline_for
    from embodied_rl.runs import compose_config

    source = edited_run(source_run, tmp_path / "hopper", env__task="mujoco/Hopper-v5")
    cfg = compose_config(["experiment=repo_adapt", f"checkpoint={source / 'checkpoints' / 'latest.pt'}", "seed=2"])
    assert cfg.run_dir == "runs/repo_adapt/mujoco/Hopper-v5/seed2"
    pipeline_for(cfg)
    assert (cfg.env.task, cfg.env.distractors, cfg.env.seed) == ("mujoco/Hopper-v5", "test", 2)
    assert cfg.agent.embed_dim == 64 and cfg.run_dir == "runs/repo_adapt/mujoco/Hopper-v5/seed2"

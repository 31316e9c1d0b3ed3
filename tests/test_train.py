"""scripts/train.py, evaluate.py and plot.py as a user runs them: outputs, errors, resume, determinism."""

from __future__ import annotations

import csv
import importlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from script_helpers import CONFIGS, REPO, load_script, train_in_process

from embodied_rl.data import DatasetError
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.trainers.run_dir import remove_unused_run_dir

# A tiny but complete online run: 2 evaluations, checkpoints every 100 steps.
TINY = [
    "env.task=metaworld/reach-v3",
    "env.time_limit=40",
    "env.shadows=false",
    "agent.hidden_dims=[32,32]",
    "trainer.total_steps=200",
    "trainer.seed_steps=60",
    "trainer.batch_size=32",
    "trainer.eval_every=100",
    "trainer.eval_episodes=1",
    "trainer.eval_videos=0",
    "trainer.checkpoint_every=100",
    "trainer.log_every=20",
    "trainer.progress=false",
    "trainer.replay_size=1000",
    "logging.console=false",
    "device=cpu",
]


def run_cli(args: list[str], cwd: Path = REPO, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # MUJOCO_GL as conftest chose it
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        **kwargs,
    )


def metric_rows(run_dir: Path, drop=("steps_per_second",)) -> list[dict]:
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in row.items() if not any(d in k for d in drop)} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_in_process([*TINY, f"run_dir={run_dir}", "trainer.eval_videos=1"])
    return run_dir


def test_run_writes_config_metrics_tensorboard_checkpoints_results_videos(tiny_run):
    assert (tiny_run / "config.yaml").read_text().count("reach-v3") >= 1
    rows = metric_rows(tiny_run, drop=())
    assert {"train/critic_loss", "train/steps_per_second", "eval/success_rate", "eval/return_mean"} <= set(rows[0])
    assert [r["step"] for r in rows if r["eval/success_rate"]] == ["100", "200"]
    assert list((tiny_run / "tb").glob("events.out.tfevents.*"))
    ckpt = torch.load(tiny_run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["step"] == 200 and {"agent", "trainer", "buffer", "rng"} <= set(ckpt)
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["final"]["step"] == 200 and results["steps"] == 200 and results["agent"] == "sac"
    assert 0.0 <= results["final"]["success_rate"] <= 1.0
    videos = sorted((tiny_run / "videos").rglob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)


def test_same_seed_gives_identical_run_on_cpu(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for run_dir in (a, b):
        train_in_process([*TINY, f"run_dir={run_dir}", "trainer.total_steps=120", "trainer.eval_every=120"])
    assert metric_rows(a) == metric_rows(b)
    wa = torch.load(a / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    wb = torch.load(b / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    for key, value in wa["actor"].items():
        assert torch.equal(value, wb["actor"][key]), key


def test_misspelt_key_is_one_clear_error():
    result = run_cli(["trainer.totl_steps=5"])
    assert result.returncode != 0
    assert "totl_steps" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_unknown_task_exits_with_code_2(tmp_path):
    result = run_cli(["env.task=metaworld/reach-v9", f"run_dir={tmp_path}"])
    assert result.returncode == 2
    assert "Unknown task" in result.stderr and "reach-v3" in result.stderr


def test_removing_a_config_key_is_an_error(tmp_path):
    """`~trainer.eval_every` would train with the dataclass default, which config.yaml would not record."""
    result = run_cli(["~trainer.eval_every", "~agent.gamma", "~trainer.kind", f"run_dir={tmp_path / 'run'}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "removing config keys (~trainer.eval_every, ~agent.gamma, ~trainer.kind) is not supported" in result.stderr
    assert not (tmp_path / "run").exists()


def test_existing_run_is_not_overwritten_silently(tiny_run):
    result = run_cli([*TINY, f"run_dir={tiny_run}"])
    assert result.returncode == 2 and "resume=true" in result.stderr and "Traceback" not in result.stderr


def start_run_until(args: list[str], ready) -> subprocess.Popen:
    """`python scripts/train.py <args>` in the background (stderr piped as text), once `ready()` is true."""
    env = dict(os.environ)  # MUJOCO_GL as conftest chose it
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not ready() and time.time() < deadline:
        assert proc.poll() is None, f"the run ended before it was ready: {proc.communicate()[1][-2000:]}"
        time.sleep(0.2)
    return proc


def test_sigkilled_run_resumes_from_its_last_checkpoint(tmp_path):
    run_dir = tmp_path / "killed"
    args = [
        *TINY,
        f"run_dir={run_dir}",
        "trainer.total_steps=400",
        "trainer.checkpoint_every=50",
        "trainer.eval_every=200",
        "logging.console=true",
    ]
    proc = start_run_until(args, lambda: list((run_dir / "checkpoints").glob("step_*0100.pt")))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["step"]
    assert 100 <= killed_at < 400

    result = run_cli([*args, "resume=true"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from step {killed_at}" in result.stdout + result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 400
    steps = [int(r["step"]) for r in metric_rows(run_dir)]
    assert steps == sorted(steps), "metrics.csv holds rows from before and after the kill out of order"
    evals = [r["step"] for r in metric_rows(run_dir) if r["eval/success_rate"]]
    assert evals == ["200", "400"]


def test_evaluate_writes_results_and_one_video_per_episode(tiny_run, tmp_path):
    evaluate = load_script("evaluate")
    out = tmp_path / "eval"
    result = evaluate.main(
        [
            str(tiny_run),
            "--episodes",
            "2",
            "--video-size",
            "48",
            "--out",
            str(out),
            "--device",
            "cpu",
            "env.time_limit=15",
        ]
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["step"] == 200 and saved["episodes"] == 2 and len(saved["per_episode"]) == 2
    assert set(saved) >= {"success_rate", "return_mean", "return_std", "length_mean"}
    assert [r["length"] for r in saved["per_episode"]] == [15, 15]
    assert len(list((out / "videos").glob("*.mp4"))) == 2
    assert result["return_mean"] == saved["return_mean"]


def test_evaluate_rejects_a_directory_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script("evaluate").main([str(tmp_path)])
    assert exc.value.code == 2 and f"error: no config.yaml in {tmp_path}" in capsys.readouterr().err


def test_plot_draws_curves_from_seed_directories(tiny_run, tmp_path):
    group = tmp_path / "runs" / "sac"
    for seed in (1, 2):
        (group / f"seed{seed}").mkdir(parents=True)
        (group / f"seed{seed}" / "metrics.csv").write_text((tiny_run / "metrics.csv").read_text())
    out = load_script("plot").main([str(tmp_path / "runs"), "--out", str(tmp_path / "curves.png")])
    assert out.exists() and out.stat().st_size > 5000
    curve = load_script("plot").curve(sorted(group.rglob("metrics.csv")), "eval/return_mean")
    assert curve[3] == 2 and curve[2].max() == 0.0  # two identical seeds: no spread


# ------------------------------------------------------------------ offline runs (IQL, SS-ORL)
OFFLINE = [
    "experiment=iql",
    "env.task=metaworld/reach-v3",
    "env.time_limit=30",
    "env.shadows=false",
    "trainer.dataset=tiny",
    "agent.hidden_dims=[32,32]",
    "trainer.total_updates=60",
    "trainer.batch_size=32",
    "trainer.eval_every=30",
    "trainer.eval_episodes=1",
    "trainer.eval_videos=0",
    "trainer.checkpoint_every=30",
    "trainer.log_every=10",
    "trainer.progress=false",
    "logging.console=false",
    "device=cpu",
]


def test_offline_iql_run_writes_outputs_with_normalised_score_and_evaluates(tiny_dataset, tmp_path):
    run_dir = tmp_path / "iql"
    results = train_in_process([*OFFLINE, f"run_dir={run_dir}"])
    assert results["updates"] == 60 and results["dataset"] == "embodied_rl/metaworld-reach-v3/tiny-v0"
    final = results["final"]
    assert final["normalized_score"] == pytest.approx(100 * final["return_mean"] / 300.0)
    rows = metric_rows(run_dir, drop=())
    assert {"train/value_loss", "eval/normalized_score"} <= set(rows[0])
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["step"] == 60 and "generator" in ckpt["trainer"]

    out = tmp_path / "eval"
    evaluated = load_script("evaluate").main(
        [str(run_dir), "--episodes", "1", "--videos", "0", "--out", str(out), "--device", "cpu", "--video-size", "32"]
    )
    assert evaluated["normalized_score"] == pytest.approx(100 * evaluated["return_mean"] / 300.0)

    # a run made on a dataset of another id (a bare-name one, before ids were canonicalised) is scored with the
    # references of the dataset its results.json records, not of the id its config would resolve to today
    from embodied_rl.data import collect_dataset
    from embodied_rl.envs import make_env
    from embodied_rl.pipelines.offline_datasets import make_behaviour_policy

    env = make_env(task="metaworld/reach-v3", time_limit=30)
    policy = make_behaviour_policy("scripted", env, "metaworld/reach-v3", noise_std=0.5, seed=0)
    legacy = "embodied_rl/reach-v3/tiny-v0"
    collect_dataset(
        env, policy, legacy, episodes=1, progress=False, metadata={"ref_min_score": 0.0, "ref_max_score": 600.0}
    )
    env.close()
    recorded = json.loads((run_dir / "results.json").read_text())
    evaluate = load_script("evaluate").main
    args = [str(run_dir), "--episodes", "1", "--videos", "0", "--out", str(out), "--device", "cpu", "--video-size", "8"]
    try:
        (run_dir / "results.json").write_text(json.dumps({**recorded, "dataset": legacy}))
        evaluated = evaluate(args)
        assert evaluated["normalized_score"] == pytest.approx(100 * evaluated["return_mean"] / 600.0)
    finally:  # the module's other tests share this Minari root
        shutil.rmtree(tiny_dataset / "embodied_rl" / "reach-v3")
    # a recorded dataset that is no longer here: the id the config resolves to
    (run_dir / "results.json").write_text(json.dumps({**recorded, "dataset": legacy}))
    evaluated = evaluate(args)
    assert evaluated["normalized_score"] == pytest.approx(100 * evaluated["return_mean"] / 300.0)


def test_offline_resume_continues_the_same_minibatch_stream(tiny_dataset, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    fixed_schedule = "agent.actor_lr_schedule_steps=60"  # else it follows total_updates, 30 in the first part
    train_in_process([*OFFLINE, f"run_dir={whole}", fixed_schedule])
    train_in_process([*OFFLINE, f"run_dir={split}", fixed_schedule, "trainer.total_updates=30"])
    train_in_process([*OFFLINE, f"run_dir={split}", fixed_schedule, "resume=true"])
    a = torch.load(whole / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    b = torch.load(split / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    for key, value in a["actor"].items():
        assert torch.allclose(value, b["actor"][key]), key


def test_offline_resume_on_another_kind_of_device_reseeds_its_minibatches(tiny_dataset, tmp_path, capsys):
    """`device=auto` run on a GPU, resumed where there is none: the CUDA generator's state cannot be restored."""
    run_dir = tmp_path / "run"
    train_in_process([*OFFLINE, f"run_dir={run_dir}", "trainer.total_updates=30"])
    latest = run_dir / "checkpoints" / "latest.pt"
    checkpoint = torch.load(latest, weights_only=False)
    checkpoint["trainer"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    torch.save(checkpoint, latest)
    assert train_in_process([*OFFLINE, f"run_dir={run_dir}", "resume=true"])["updates"] == 60  # console=false
    assert "minibatch generator ran on another kind of device; reseeded" in capsys.readouterr().err


SSORL = [
    *OFFLINE,
    "experiment=ssorl",
    "env=metaworld",
    "env.task=metaworld/reach-v3",
    "ssorl.labelled_fraction=0.34",
    "ssorl.idm.steps=40",
    "ssorl.idm.eval_every=20",
    "ssorl.idm.hidden_dims=[32,32]",
    "ssorl.idm.progress=false",
    "trainer.reward.normalize=none",
]


def test_ssorl_chain_runs_from_one_command_and_logs_proxy_action_error(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "ssorl"
    train_in_process([*SSORL, f"run_dir={run_dir}", "logging.console=true"])
    assert re.search(r"\[done\] .*: final at update 60: success", capsys.readouterr().out)  # offline: updates
    diagnostics = json.loads((run_dir / "ssorl.json").read_text())
    assert diagnostics["arm"] == "semi_supervised"
    assert diagnostics["num_labelled"] == 2 and diagnostics["num_unlabelled"] == 4
    assert diagnostics["proxy_action_mse"] > 0
    rows = metric_rows(run_dir, drop=())
    assert float(rows[0]["ssorl/proxy_action_mse"]) == pytest.approx(diagnostics["proxy_action_mse"])
    assert json.loads((run_dir / "results.json").read_text())["updates"] == 60
    # the IDM's curves, on its own step axis, beside the run's (its metrics.csv and TensorBoard events)
    idm_rows = metric_rows(run_dir / "idm", drop=())
    assert [int(float(row["step"])) for row in idm_rows] == diagnostics["idm"]["eval_steps"] == [20, 40]
    assert [float(row["idm/val_nll"]) for row in idm_rows] == pytest.approx(diagnostics["idm"]["val_nll"])
    assert not any(key.startswith("idm/") for key in rows[0])
    assert list((run_dir / "idm" / "tb").glob("events.out.tfevents.*"))
    # evaluate.py names the run's pipeline (from the registry) in its results
    evaluated = load_script("evaluate").main(
        [str(run_dir), "--episodes", "1", "--videos", "0", "--out", str(tmp_path / "eval"), "--device", "cpu"]
    )
    assert evaluated["pipeline"] == "ssorl" and evaluated["step"] == 60


@pytest.mark.parametrize(
    "override, error",
    [
        ("ssorl.window=2.5", "ssorl.window=2.5 (must be an integer)"),  # a ConfigError, before the data is read
        ("ssorl.labelled_fraction=0.99", "leaves none unlabelled"),  # a DatasetError from the split
    ],
)
def test_a_refused_ssorl_run_leaves_no_run_directory(tiny_dataset, tmp_path, override, error):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape(error)):
        train_in_process([*SSORL, override, "ssorl.return_quantile=1.0", f"run_dir={run_dir}"])
    assert not run_dir.exists()


def test_ssorl_arms_without_an_idm_write_no_idm_folder(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    train_in_process([*SSORL, "ssorl.arm=labelled_only", "trainer.total_updates=10", f"run_dir={run_dir}"])
    assert (run_dir / "ssorl.json").exists() and not (run_dir / "idm").exists()


# ------------------------------------------------------------------ divergence
def _nan_after(update, calls: int):
    """An agent's `update` that returns a NaN critic loss from its `calls`-th call on (as a diverged run does)."""
    count = 0

    def wrapped(self, batch):
        nonlocal count
        count += 1
        metrics = update(self, batch)
        return {**metrics, "critic_loss": torch.tensor(float("nan"))} if count >= calls else metrics

    return wrapped


def test_a_diverged_online_run_stops_before_it_evaluates_or_checkpoints_broken_networks(tmp_path, monkeypatch):
    from embodied_rl.agents.sac import SAC
    from embodied_rl.trainers.divergence import TrainingDiverged

    monkeypatch.setattr(SAC, "update", _nan_after(SAC.update, 70))  # update 70 happens at step 60 + 69 = 129
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 140: .*critic_loss=nan"):
        train_in_process([*TINY, f"run_dir={tmp_path}"])
    assert torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=False)["step"] == 100
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_000000100.pt"]
    assert not (tmp_path / "results.json").exists()
    assert metric_rows(tmp_path)[-1]["train/critic_loss"] == "nan"  # the diverged update is on record


def test_parameters_broken_while_the_losses_look_finite_stop_the_run(tiny_dataset, tmp_path, monkeypatch):
    from embodied_rl.agents.iql import IQL
    from embodied_rl.trainers.divergence import TrainingDiverged

    update, count = IQL.update, 0

    def breaks_the_actor_quietly(self, batch):
        nonlocal count
        count += 1
        metrics = update(self, batch)
        if count == 25:
            next(self.actor.parameters()).data.fill_(float("inf"))
        return {key: value.nan_to_num(0.0) for key, value in metrics.items()}  # the losses never show it

    monkeypatch.setattr(IQL, "update", breaks_the_actor_quietly)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at update 40: the agent's parameters"):
        train_in_process([*OFFLINE, f"run_dir={tmp_path}", "trainer.checkpoint_every=20"])
    assert torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=False)["step"] == 20


def test_a_diverged_offline_run_stops_with_one_clear_error(tiny_dataset, tmp_path, monkeypatch):
    from embodied_rl.agents.iql import IQL
    from embodied_rl.trainers.divergence import TrainingDiverged

    monkeypatch.setattr(IQL, "update", _nan_after(IQL.update, 25))
    with pytest.raises(TrainingDiverged, match=r"^training diverged at update 30: "):
        train_in_process([*OFFLINE, f"run_dir={tmp_path / 'patched'}", "trainer.checkpoint_every=20"])
    assert torch.load(tmp_path / "patched" / "checkpoints" / "latest.pt", weights_only=False)["step"] == 20
    monkeypatch.undo()

    result = run_cli([*OFFLINE, f"run_dir={tmp_path / 'cli'}", "agent.critic_lr=1e30"])  # overflows at once
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: training diverged at update 10: " in result.stderr
    assert not (tmp_path / "cli" / "checkpoints").exists() and not (tmp_path / "cli" / "results.json").exists()


def test_ssorl_resume_trains_on_the_saved_proxy_actions_without_training_the_idm_again(
    tiny_dataset, tmp_path, monkeypatch
):
    import embodied_rl.pipelines.ssorl as ssorl

    whole, split = tmp_path / "whole", tmp_path / "split"
    args = [*SSORL, "agent.actor_lr_schedule_steps=60"]  # else it follows total_updates, 30 in the first part
    train_in_process([*args, f"run_dir={whole}"])
    train_in_process([*args, f"run_dir={split}", "trainer.total_updates=30"])
    first = json.loads((split / "ssorl.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed SS-ORL run trained its IDM again")

    monkeypatch.setattr(ssorl, "train_inverse_dynamics", no_training)
    train_in_process([*args, f"run_dir={split}", "resume=true"])
    assert json.loads((split / "ssorl.json").read_text()) == first
    a = torch.load(whole / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    b = torch.load(split / "checkpoints" / "latest.pt", weights_only=False)["agent"]
    for key, value in a["actor"].items():
        assert torch.allclose(value, b["actor"][key]), key

    # a run made before runs kept their arm's dataset resumes by preparing it again
    monkeypatch.undo()
    (split / "ssorl_dataset.npz").unlink()
    assert train_in_process([*args, f"run_dir={split}", "resume=true", "trainer.total_updates=90"])["updates"] == 90
    assert (split / "ssorl_dataset.npz").exists()
    assert sum(bool(row.get("ssorl/proxy_action_mse")) for row in metric_rows(split, drop=())) == 1  # one step-0 row


def test_ssorl_metaworld_experiment_is_ssorl_with_the_readme_settings_pinned():
    by_hand = [
        "experiment=ssorl",
        "env=metaworld",
        "env.task=metaworld/drawer-open-v3",
        "trainer.dataset=mixed",
        "trainer.reward.normalize=none",
        "ssorl.window=2",
    ]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        pinned = OmegaConf.to_container(compose("config", overrides=["experiment=ssorl_metaworld"]))
        expected = OmegaConf.to_container(compose("config", overrides=by_hand))
    assert pinned == expected
    assert pinned["ssorl"]["idm"]["inputs"] == "differences"


def test_summarize_reports_mean_and_std_over_seeds_and_lists_unfinished_runs(tiny_run, tmp_path, capsys):
    group = tmp_path / "runs" / "sac"
    for seed, success in ((1, 0.0), (2, 1.0)):
        run = group / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("seed: 1\n")
        results = json.loads((tiny_run / "results.json").read_text())
        results["final"]["success_rate"] = success
        (run / "results.json").write_text(json.dumps(results))
    (group / "seed3").mkdir()
    (group / "seed3" / "config.yaml").write_text("seed: 3\n")
    (group / "seed1" / ".hydra").mkdir()  # what a single (non -m) Hydra run writes inside its run directory
    (group / "seed1" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    text = load_script("summarize").main([str(tmp_path / "runs"), "--metric", "success_rate"])
    assert f"| {group} | 2 | 200 | 0.50 ± 0.50 |" in text
    unfinished = [line for line in capsys.readouterr().out.splitlines() if "unfinished" in line]
    assert unfinished == [f"unfinished (no results.json): {group / 'seed3'}"]


@pytest.mark.parametrize("launcher, target", [("local", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_sweep_launcher_configs_compose(launcher, target):
    """`-m hydra/launcher=local|slurm` must resolve to the installed joblib / submitit launchers."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"hydra/launcher={launcher}", "experiment=sac_metaworld"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_.endswith(target)
    module_name, class_name = cfg.hydra.launcher._target_.rsplit(".", 1)
    assert hasattr(importlib.import_module(module_name), class_name)


def test_agent_option_of_another_agent_is_a_clear_error():
    from embodied_rl.envs import make_env
    from embodied_rl.trainers.builders import make_agent

    env = make_env(task="metaworld/reach-v3")
    with pytest.raises(ValueError, match="does not take actor_lr_schedule_steps"):
        make_agent(
            {"name": "td3bc", "actor_lr_schedule_steps": 10},
            env.observation_space,
            env.action_space,
            torch.device("cpu"),
        )


# ------------------------------------------------------------------ resume edge cases and config errors
def test_resume_before_the_first_checkpoint_starts_the_logs_afresh(tmp_path):
    run_dir = tmp_path / "early"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    shutil.rmtree(run_dir / "checkpoints")  # as if killed before its first checkpoint
    (run_dir / "results.json").unlink()
    train_in_process([*args, "resume=true"])
    steps = [int(r["step"]) for r in metric_rows(run_dir)]
    assert steps == sorted(steps), "metrics.csv holds the rows of both attempts"
    assert [r["step"] for r in metric_rows(run_dir) if r["eval/success_rate"]] == ["100"]
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1


def test_resume_with_another_network_is_refused_before_config_yaml_changes(tmp_path):
    from embodied_rl.trainers.builders import ConfigError

    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    stored = (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"agent.hidden_dims: \[32, 32\] -> \[64, 64\]"):
        train_in_process([*args, "resume=true", "agent.hidden_dims=[64,64]"])
    assert (run_dir / "config.yaml").read_text() == stored


def test_resuming_a_finished_run_does_nothing_and_a_longer_total_extends_it(tmp_path, capsys):
    run_dir = tmp_path / "done"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    rows, results = metric_rows(run_dir, drop=()), (run_dir / "results.json").read_text()
    assert train_in_process([*args, "resume=true"]) == json.loads(results)
    assert "already complete" in capsys.readouterr().out
    assert metric_rows(run_dir, drop=()) == rows and (run_dir / "results.json").read_text() == results
    assert train_in_process([*args, "resume=true", "trainer.total_steps=200"])["steps"] == 200
    assert [r["step"] for r in metric_rows(run_dir) if r["eval/success_rate"]] == ["100", "200"]


@pytest.mark.parametrize("kind", ["online", "offline"])
def test_a_run_killed_before_its_results_json_gets_it_on_resume(kind, tmp_path, request, capsys):
    """A kill between the last checkpoint and results.json (crash audit): the checkpoint holds the evaluations."""
    if kind == "offline":
        request.getfixturevalue("tiny_dataset")
    base = TINY if kind == "online" else OFFLINE
    args = [*base, f"run_dir={tmp_path / 'run'}"]
    results_file = tmp_path / "run" / "results.json"
    expected = train_in_process(args)
    results_file.unlink()
    assert train_in_process([*args, "resume=true"]) == expected
    assert json.loads(results_file.read_text()) == expected and "wrote the missing" in capsys.readouterr().out


def test_extending_a_run_removes_its_results_json_once_it_trains(tmp_path, monkeypatch):
    import embodied_rl.trainers

    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)

    def killed(self):
        raise RuntimeError("killed")

    longer = [*args, "resume=true", "trainer.total_steps=200"]
    with pytest.raises(ConfigError, match="replay buffer"):  # refused before it trains: still a finished run
        train_in_process([*longer, "trainer.replay_size=1000000000000"])
    assert (run_dir / "results.json").exists()
    with monkeypatch.context() as patch:
        patch.setattr(embodied_rl.trainers.OnlineTrainer, "train", killed)
        with pytest.raises(RuntimeError, match="killed"):
            train_in_process(longer)
    assert not (run_dir / "results.json").exists()  # else summarize.py would report it finished at step 100
    assert train_in_process(longer)["steps"] == 200 and (run_dir / "results.json").exists()


def test_extending_a_run_may_change_its_schedules_and_replay_size(tmp_path):
    """The README's extension: resume=true trainer.total_steps=... trainer.eval_every=... trainer.replay_size=..."""
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    longer = ["trainer.total_steps=160", "trainer.eval_every=30", "trainer.checkpoint_every=30"]
    train_in_process([*args, "resume=true", *longer, "trainer.replay_size=2000", "trainer.eval_episodes=2"])
    assert [r["step"] for r in metric_rows(run_dir) if r["eval/success_rate"]] == ["100", "120", "150", "160"]
    buffer = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["buffer"]
    assert (buffer["capacity"], buffer["size"]) == (2000, 160)
    assert "replay_size: 2000" in (run_dir / "config.yaml").read_text()


def test_state_and_pixels_observations_train_and_resume(tmp_path):
    """env.obs_mode=state+pixels: a Dict observation space, stored by the replay buffer one tensor per key."""
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        f"run_dir={run_dir}",
        "env.obs_mode=state+pixels",
        "env.image_size=16",
        "env.time_limit=20",  # episodes end: the true final observations are stored
        "trainer.total_steps=50",
        "trainer.seed_steps=30",
        "trainer.batch_size=8",
        "trainer.eval_every=50",
        "trainer.checkpoint_every=50",
    ]
    assert train_in_process(args)["updates"] == 21
    buffer = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["buffer"]
    assert buffer["obs"]["pixels"].shape == (50, 16, 16, 3) and buffer["obs"]["state"].dtype == torch.float32
    results = train_in_process([*args, "resume=true", "trainer.total_steps=70", "trainer.replay_size=60"])
    assert results["steps"] == 70 and results["updates"] == 41


def test_replay_buffer_larger_than_the_memory_is_one_error_with_a_size_that_fits(tmp_path, monkeypatch):
    from embodied_rl import memory
    from embodied_rl.trainers.builders import ConfigError

    monkeypatch.setattr(memory, "available_memory", lambda device: 10**6)  # 1 MB; a state row is 336 bytes
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"replay_size=100000 needs a .* GB .* use trainer.replay_size=1400 or less"):
        train_in_process([*TINY, f"run_dir={run_dir}", "trainer.replay_size=100000"])
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match="the buffer may take half"):  # 672 kB: fits in 1 MB, not in half of it
        train_in_process([*TINY, f"run_dir={run_dir}", "trainer.replay_size=2000"])
    train_in_process([*TINY, f"run_dir={run_dir}", "trainer.replay_size=1400", "trainer.total_steps=20"])


def test_a_run_that_fails_its_config_checks_leaves_no_folders(tmp_path):
    result = run_cli(["name=nope", "env.obs_mode=bogus", "trainer.progress=false"], cwd=tmp_path)
    assert result.returncode == 2 and "obs_mode must be" in result.stderr, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # runs/nope/<task>/seed1 was Hydra's output folder


def test_resume_hides_tensorboard_events_logged_after_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    run_dir = tmp_path / "tb"
    args = [*TINY, f"run_dir={run_dir}", "trainer.keep_checkpoints=0"]
    train_in_process(args)
    checkpoints = run_dir / "checkpoints"
    (checkpoints / "latest.pt").unlink()  # a hard link to step 200: as if killed just before writing it
    shutil.copy(checkpoints / "step_000000100.pt", checkpoints / "latest.pt")
    train_in_process([*args, "resume=true"])
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/success_rate")] == [100, 200]
    updates = [e.step for e in events.Scalars("train/updates")]
    assert updates == sorted(set(updates))
    runs = EventMultiplexer()  # what `tensorboard --load_fast=false` reads with
    runs.AddRunsFromDirectory(str(run_dir))
    runs.Reload()
    assert [e.step for e in runs.Tensors("tb", "train/updates")] == updates


def test_resume_without_a_saved_replay_buffer_refills_it_before_updating(tmp_path, capsys):
    args = [*TINY, f"run_dir={tmp_path / 'run'}", "trainer.save_replay=false", "trainer.total_steps=100"]
    train_in_process(args)
    results = train_in_process([*args, "resume=true", "trainer.total_steps=200", "logging.console=false"])
    assert results["updates"] == 2 * 41  # updates at steps 60..100, then 60 warm-up steps again: 160..200
    assert "60 random steps refill it" in capsys.readouterr().err  # a warning, shown with console=false too


class FinalStepSuccess(gym.Env):
    """Three-step episodes that report success only on their last step; actions in [-2, 2]."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"success": False}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), 0.0, False, self.t == 3, {"success": self.t == 3}


def test_online_trainer_counts_success_on_the_last_step_and_logs_episodes_at_the_step_reached(tmp_path):
    from types import SimpleNamespace

    from embodied_rl.trainers import OnlineTrainer, OnlineTrainerConfig

    envs = gym.vector.SyncVectorEnv([FinalStepSuccess] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    actions, rows = [], []
    buffer = SimpleNamespace(add=lambda obs, action, *rest, **named: actions.append(action))
    logger = SimpleNamespace(log=lambda m, step, prefix="": rows.append((step, m)), flush=lambda: None)
    cfg = OnlineTrainerConfig(total_steps=18, seed_steps=100, eval_every=0, checkpoint_every=0, log_every=0)
    trainer = OnlineTrainer(cfg, envs, None, None, buffer, logger, tmp_path)
    trainer.evaluate, trainer.save = (lambda: {"step": trainer.step}), (lambda: None)
    trainer.train()
    episodes = [(step, m["success"]) for step, m in rows if "success" in m]
    assert episodes == [(6, 1.0), (6, 1.0), (12, 1.0), (12, 1.0), (18, 1.0), (18, 1.0)]
    assert np.abs(actions).max() > 1.0 and np.abs(actions).max() <= 2.0  # warm-up spans the action bounds


class RandomStart(FinalStepSuccess):
    """FinalStepSuccess whose first observation is drawn from the reset seed."""

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        return self.np_random.uniform(-1.0, 1.0, 1).astype(np.float32), info


class FlashOfSuccess(FinalStepSuccess):
    """Succeeds on step 2 of 3 only; renders a frame filled with the step count."""

    def step(self, action):
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, {"success": self.t == 2}

    def render(self):
        return np.full((4, 4, 3), self.t, np.uint8)


class RandomAgent:
    """Samples actions from torch's global RNG unless deterministic (as SAC does); records how it was called."""

    device = None

    def __init__(self):
        self.updates, self.deterministic = 0, []

    def act(self, obs, deterministic=False):
        self.deterministic.append(deterministic)
        if deterministic:  # the mean action: no draw
            return np.zeros((*np.shape(obs)[:-1], 1), np.float32)
        return (4 * torch.rand(*np.shape(obs)[:-1], 1) - 2).numpy()

    def update(self, batch):
        self.updates += 1
        return {}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = state["updates"]


def tiny_online_trainer(run_dir, env_class=FinalStepSuccess, seed=0, **options):
    """An OnlineTrainer on two `env_class` envs with a RandomAgent, a real replay buffer and a CSV logger."""
    from embodied_rl.data import ReplayBuffer
    from embodied_rl.logging import RunLogger
    from embodied_rl.trainers import OnlineTrainer, OnlineTrainerConfig

    envs = gym.vector.SyncVectorEnv([env_class] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    buffer = ReplayBuffer.from_spaces(100, envs.single_observation_space, envs.single_action_space)
    defaults = dict(batch_size=4, eval_every=0, eval_episodes=2, checkpoint_every=0, log_every=0, progress=False)
    cfg = OnlineTrainerConfig(**{**defaults, **options})
    logger = RunLogger(run_dir, tensorboard=False, console=False)
    return OnlineTrainer(cfg, envs, env_class(), RandomAgent(), buffer, logger, run_dir, seed=seed)


@pytest.mark.parametrize("utd_ratio, updates", [(0.25, 3), (2.0, 28)])
def test_online_trainer_makes_utd_ratio_updates_per_env_step_after_the_warm_up(tmp_path, utd_ratio, updates):
    trainer = tiny_online_trainer(tmp_path, total_steps=18, seed_steps=6, utd_ratio=utd_ratio)
    results = trainer.train()  # 7 vector steps of 2 env steps from step 6 on: 14 env steps
    assert results["updates"] == trainer.agent.updates == updates


def test_online_trainer_stores_true_last_observations_and_truncation_is_not_termination(tmp_path):
    trainer = tiny_online_trainer(tmp_path, total_steps=12, seed_steps=100)
    trainer.train()
    buffer = trainer.storage
    assert buffer.size == 12
    # obs counts the steps of its episode: the last step (truncated) leads to obs 3, not to the reset's 0
    torch.testing.assert_close(buffer.next_obs[:12], buffer.obs[:12] + 1)
    assert buffer.terminated[:12].sum() == 0


def test_online_runs_with_different_seeds_start_their_episodes_differently(tmp_path):
    first_obs = []
    for seed in (0, 1):
        trainer = tiny_online_trainer(tmp_path / f"seed{seed}", RandomStart, seed=seed, total_steps=2, seed_steps=10)
        trainer.train()
        first_obs += trainer.storage.obs[:2, 0].tolist()
    assert len(set(first_obs)) == 4, first_obs  # no sub-env of one run starts like one of the other


@pytest.mark.parametrize(
    "seed_steps, utd_ratio, updates",
    [(4, 1.0, 10), (8, 1.0, 6), (2, 0.25, 3)],  # the checkpoint (step 6) after the warm-up, within it, or
)  # owing half an update (0.25 x 2 envs per vector step: updates at steps 4, 8 and 12)
def test_online_resume_continues_the_random_streams_of_the_uninterrupted_run(tmp_path, seed_steps, utd_ratio, updates):
    """Checkpoint at step 6, an episode boundary: the warm-up actions (the trainer's generator), the agent's
    sampled actions and minibatches (torch's global RNG) and the update schedule continue as if the run had
    never stopped."""
    options = dict(seed_steps=seed_steps, utd_ratio=utd_ratio)
    torch.manual_seed(0)
    whole = tiny_online_trainer(tmp_path / "whole", total_steps=12, **options)
    whole.train()
    torch.manual_seed(0)
    tiny_online_trainer(tmp_path / "split", total_steps=6, **options).train()
    torch.manual_seed(0)  # a new process seeds everything again before it resumes
    resumed = tiny_online_trainer(tmp_path / "split", total_steps=12, **options)
    resumed.resume(tmp_path / "split")
    resumed.train()
    assert resumed.updates_done == whole.updates_done == updates
    assert resumed.episodes_done == whole.episodes_done == 4  # 2 envs x 6 steps of 3-step episodes
    torch.testing.assert_close(resumed.storage.action[:12], whole.storage.action[:12], rtol=0, atol=0)


def test_resume_without_a_replay_buffer_refills_at_least_one_batch_before_updating(tmp_path):
    options = dict(seed_steps=2, batch_size=8, save_replay=False)
    tiny_online_trainer(tmp_path, total_steps=6, **options).train()  # updates from step 2; checkpoint at 6
    resumed = tiny_online_trainer(tmp_path, total_steps=20, **options)
    resumed.resume(tmp_path)
    assert resumed.warmup_until == 6 + 8  # max(seed_steps, batch_size) random steps, not seed_steps
    resumed.train()
    assert resumed.updates_done == 6 + 8  # 2 per vector step: 3 steps before the checkpoint, 4 from step 14 on


def test_evaluation_is_deterministic_counts_success_at_any_step_and_records_every_frame(tmp_path, monkeypatch):
    from embodied_rl.trainers import evaluation

    videos = []
    monkeypatch.setattr(evaluation, "write_video", lambda path, frames, fps: videos.append(frames) or path)
    trainer = tiny_online_trainer(tmp_path, FlashOfSuccess, eval_videos=1)
    result = trainer.evaluate()
    assert result["success_rate"] == 1.0 and result["length_mean"] == 3
    assert trainer.agent.deterministic == [True] * 6
    assert [frame[0, 0, 0] for frame in videos[0]] == [0, 1, 2, 3]  # the reset frame, then one per step


def test_online_schedules_fire_when_the_step_passes_a_multiple_with_several_envs(tmp_path):
    """Two envs step by 2: eval_every=5 evaluates at steps 6 and 10 (and at the end), checkpoints likewise."""
    trainer = tiny_online_trainer(
        tmp_path, total_steps=12, seed_steps=100, eval_every=5, checkpoint_every=5, keep_checkpoints=0
    )
    trainer.train()
    assert [int(r["step"]) for r in metric_rows(tmp_path) if r.get("eval/success_rate")] == [6, 10, 12]
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step_*.pt"))] == [
        f"step_{step:09d}.pt" for step in (6, 10, 12)
    ]


def test_best_evaluation_ranks_success_rate_before_return():
    from embodied_rl.trainers.evaluation import is_better

    solved, rewarding = {"success_rate": 0.5, "return_mean": 10.0}, {"success_rate": 0.0, "return_mean": 900.0}
    assert is_better(solved, rewarding) and not is_better(rewarding, solved) and is_better(rewarding, None)


def test_an_evaluation_after_the_loop_can_become_the_best(tmp_path):
    """A run whose last checkpoint is at its final update but whose last evaluation is older (no loop left to
    run) evaluates once more; a better result there is the run's best, as any evaluation in the loop would be."""
    from types import SimpleNamespace

    from embodied_rl.data import Transitions
    from embodied_rl.trainers import OfflineTrainer, OfflineTrainerConfig

    data = Transitions(torch.zeros(4, 2), torch.zeros(4, 1), torch.zeros(4), torch.zeros(4, 2), torch.zeros(4))
    agent = SimpleNamespace(normalizer_fitted=True)
    logger = SimpleNamespace(flush=lambda: None)
    cfg = OfflineTrainerConfig(total_updates=10, progress=False)
    trainer = OfflineTrainer(cfg, data, None, agent, logger, tmp_path)
    trainer.step = 10
    trainer.last_eval = trainer.best_eval = {"step": 5, "success_rate": 0.0, "return_mean": 1.0}
    trainer.evaluate = lambda: {"step": trainer.step, "success_rate": 1.0, "return_mean": 2.0}
    results = trainer.train()
    assert results["final"]["step"] == 10 and results["best"] == results["final"]


def test_checkpoint_pruning_keeps_the_newest_files(tmp_path):
    from embodied_rl.trainers import load_checkpoint, save_checkpoint

    for step in (100, 200, 300):
        save_checkpoint(tmp_path, step, {"agent": {}}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_000000200.pt", "step_000000300.pt"]
    assert load_checkpoint(tmp_path)["step"] == 300
    # the partial file of a save killed part-way (it may hold a whole replay buffer) goes at the next save
    (tmp_path / "step_000000400.pt.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".step_000000350.pt.tmp").write_bytes(b"one from an older version")
    save_checkpoint(tmp_path, 400, {"agent": {}}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "step_000000300.pt", "step_000000400.pt"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("+agent.foo=1", "does not take foo"),
        ("trainer.kind=bogus", "trainer.kind must be"),
        ("env.obs_mode=bogus", "obs_mode must be"),
        ("device=cuda", "CUDA is not available"),
    ],
)
def test_config_errors_are_one_line_with_exit_code_2(override, message, tmp_path):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli([override, f"run_dir={tmp_path / 'run'}", "trainer.progress=false"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: " in result.stderr and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists(), "a run that failed its config checks left its folder behind"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.num_envs=0"], "num_envs must be >= 1, got 0"),
        (
            ["trainer.utd_ratio=-1", "trainer.batch_size=0", "trainer.log_every=-5"],
            "invalid trainer settings: trainer.batch_size=0 (must be > 0), trainer.log_every=-5 (must be >= 0), "
            "trainer.utd_ratio=-1 (must be > 0)",
        ),
        (["trainer.eval_episodes=0"], "trainer.eval_episodes=0 (must be > 0)"),
        (
            ["agent.gamma=1.5", "agent.tau=0", "agent.alpha_lr=-1e-4"],
            "invalid hyperparameters: alpha_lr=-0.0001 (must be > 0), gamma=1.5 (must be in [0, 1]), tau=0 "
            "(must be in (0, 1])",
        ),
    ],
)
def test_values_out_of_range_are_config_errors_before_anything_runs(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train_in_process([*TINY, *overrides, f"run_dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()


def test_offline_values_out_of_range_are_config_errors(tiny_dataset, tmp_path):
    import embodied_rl.pipelines.ssorl as ssorl

    def no_training(*args, **kwargs):
        raise AssertionError("the IDM trained before the config was checked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ssorl, "train_inverse_dynamics", no_training)
        with pytest.raises(ConfigError, match=re.escape("trainer.batch_size=0 (must be > 0)")):
            train_in_process([*SSORL, "trainer.batch_size=0", f"run_dir={tmp_path / 'a'}"])
        with pytest.raises(ConfigError, match=re.escape("gamma=1.5 (must be in [0, 1])")):
            train_in_process([*SSORL, "agent.gamma=1.5", f"run_dir={tmp_path / 'b'}"])
    for agent, option, message in [
        ("iql", "agent.beta=-1", "invalid hyperparameters: beta=-1 (must be >= 0)"),
        ("td3bc", "agent.alpha=-2.5", "invalid hyperparameters: alpha=-2.5 (must be >= 0)"),
        ("bc", "agent.lr=0", "invalid hyperparameters: lr=0 (must be > 0)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            train_in_process([*OFFLINE, f"experiment={agent}", option, f"run_dir={tmp_path / agent}"])


def test_extending_an_iql_run_stretches_its_derived_lr_schedule(tiny_dataset, tmp_path):
    """experiment=iql interpolates agent.actor_lr_schedule_steps from trainer.total_updates: extending is allowed."""
    run_dir = tmp_path / "run"
    args = [*OFFLINE, f"run_dir={run_dir}"]
    train_in_process(args)
    assert train_in_process([*args, "resume=true", "trainer.total_updates=90"])["updates"] == 90
    assert "actor_lr_schedule_steps: 90" in (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="agent.expectile"):  # a real change is still refused
        train_in_process([*args, "resume=true", "trainer.total_updates=120", "agent.expectile=0.9"])


def test_resume_of_a_finished_run_without_checkpoints_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(ConfigError, match="no checkpoints/latest.pt"):
        train_in_process([*args, "resume=true"])
    assert (run_dir / "results.json").exists() and (run_dir / "metrics.csv").exists()  # nothing wiped


def test_a_refused_job_does_not_stop_the_rest_of_a_sweep(tmp_path):
    """-m ... resume=true: seed 1 is refused (changed config), seed 2 still runs; the sweep exits non-zero."""
    run_dir = tmp_path / "runs" / "seed${seed}"
    tiny = [arg for arg in TINY if not arg.startswith("agent.hidden_dims")]
    args = [*tiny, f"run_dir={run_dir}", "trainer.total_steps=60", "trainer.seed_steps=20"]
    train_in_process([*args, "seed=1", "agent.hidden_dims=[32,32]"])
    sweep = [
        "-m",
        *args,
        "seed=1,2",
        "resume=true",
        "agent.hidden_dims=[16,16]",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    swept = run_cli(sweep)
    assert swept.returncode != 0
    assert "agent.hidden_dims" in swept.stderr
    assert (tmp_path / "runs" / "seed2" / "results.json").exists()


def test_resume_may_not_lower_keep_checkpoints(tmp_path):
    """A dataset recipe reads every checkpoint of a keep_checkpoints=0 run: a resume must not prune them."""
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100", "trainer.keep_checkpoints=0"]
    train_in_process([*args, "trainer.checkpoint_every=25"])
    kept = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert len(kept) == 4
    with pytest.raises(ConfigError, match="trainer.keep_checkpoints: 0 -> 1"):
        train_in_process([*args, "trainer.checkpoint_every=25", "resume=true", "trainer.keep_checkpoints=1"])
    assert sorted((run_dir / "checkpoints").glob("step_*.pt")) == kept


def test_resume_refuses_a_changed_learning_rate_seed_or_batch_size(tmp_path):
    """Settings that change what the agent learns are not among the resumable ones."""
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    for change in ("agent.actor_lr=0.001", "agent.critic_lr=0.001", "seed=2", "trainer.batch_size=16"):
        key = change.split("=")[0]
        with pytest.raises(ConfigError, match=rf"{key}: \S+ -> "):
            train_in_process([*args, "resume=true", "trainer.total_steps=200", change])
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 100


def test_resume_accepts_config_keys_added_to_the_package_after_the_run_was_made(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100"]
    train_in_process(args)
    stored = OmegaConf.load(run_dir / "config.yaml")
    del stored.agent["mixed_precision"]  # as in a run made before the key existed
    OmegaConf.save(stored, run_dir / "config.yaml")
    # a new value for the new key is a change; a pipeline's config group added to an online run is refused at once
    for change, error in [
        ("agent.mixed_precision=true", "differs from"),
        ("+ssorl=default", "the ssorl pipeline runs with trainer=offline, not trainer=online"),
    ]:
        with pytest.raises(ConfigError, match=error):
            train_in_process([*args, "resume=true", "trainer.total_steps=200", change])
    train_in_process([*args, "resume=true", "trainer.total_steps=200"])
    assert "predates agent.mixed_precision" in capsys.readouterr().err
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 200
    assert OmegaConf.load(run_dir / "config.yaml").agent.mixed_precision is False


def test_the_seed_sets_the_initial_weights_of_the_agent(tmp_path):
    actors = []
    for seed in (1, 2):
        run_dir = tmp_path / f"seed{seed}"
        short = ["trainer.total_steps=20", "trainer.eval_every=20", "trainer.checkpoint_every=20"]  # no update yet
        train_in_process([*TINY, f"run_dir={run_dir}", f"seed={seed}", *short])
        actors.append(torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["agent"]["actor"])
    weights = [key for key in actors[0] if key.endswith("weight")]
    assert weights and not any(torch.equal(actors[0][key], actors[1][key]) for key in weights)


def test_a_resumed_logger_drops_the_rows_logged_after_the_checkpoint(tmp_path):
    from embodied_rl.logging import RunLogger

    killed = RunLogger(tmp_path, tensorboard=False, console=False)
    for step in (10, 20, 30):  # the checkpoint was taken at step 20, then the run was killed
        killed.log({"loss": step / 10}, step, prefix="train")
    resumed = RunLogger(tmp_path, tensorboard=False, console=False)
    resumed.truncate_after(20)
    assert [r["step"] for r in metric_rows(tmp_path)] == ["10", "20"]
    resumed.log({"loss": 9.0}, 30, prefix="train")
    assert [(r["step"], r["train/loss"]) for r in metric_rows(tmp_path)] == [("10", "1"), ("20", "2"), ("30", "9")]


def test_offline_reward_transform_rescales_by_the_spread_of_returns_then_scales_and_shifts():
    from types import SimpleNamespace

    from embodied_rl.trainers.assembly import scale_rewards

    trajectories = [SimpleNamespace(episode_return=r) for r in (-100.0, 50.0, 300.0)]  # spread 400
    reward = torch.tensor([1.0, -2.0, 0.0])
    for normalize, factor in (("none", 1.0), ("returns", 1000.0 / 400.0)):
        cfg = OmegaConf.create({"trainer": {"reward": {"normalize": normalize, "scale": 2.0, "shift": -1.0}}})
        data = scale_rewards(SimpleNamespace(reward=reward.clone()), trajectories, cfg)
        torch.testing.assert_close(data.reward, reward * factor * 2.0 - 1.0)


def test_main_called_with_a_config_outside_hydra_reports_config_errors(tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, f"run_dir={tmp_path / 'run'}", "trainer.kind=bogus"])
    with pytest.raises(SystemExit) as exit_info:
        load_script("train").main(cfg)
    assert exit_info.value.code == 2


def test_a_config_error_never_removes_the_working_directory(tmp_path, monkeypatch):
    """run_dir=. with a config error: the folder holds only Hydra's files, but it is where the user works."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    remove_unused_run_dir(Path("."))
    assert (tmp_path / "config.yaml").exists()


class SeedRecordingEnv(FinalStepSuccess):
    """FinalStepSuccess that records the seed of every reset."""

    def __init__(self):
        self.seeds = []

    def reset(self, seed=None, options=None):
        self.seeds.append(seed)
        return super().reset(seed=seed)


class MinibatchRecordingAgent(RandomAgent):
    """A RandomAgent that records the observations of every minibatch it is updated on."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def update(self, batch):
        self.batches.append(batch.obs[:, 0].tolist())
        return super().update(batch)


def tiny_offline_trainer(run_dir, seed=0, **options):
    """An OfflineTrainer on 50 transitions (obs 0..49) with a MinibatchRecordingAgent and a SeedRecordingEnv."""
    from embodied_rl.data import Transitions
    from embodied_rl.logging import RunLogger
    from embodied_rl.trainers import OfflineTrainer, OfflineTrainerConfig

    obs = torch.arange(50, dtype=torch.float32)[:, None]
    zeros = torch.zeros(50)
    data = Transitions(obs=obs, action=zeros[:, None], reward=zeros, next_obs=obs + 1, terminated=zeros)
    defaults = dict(batch_size=4, eval_every=0, eval_episodes=2, checkpoint_every=0, log_every=0, progress=False)
    cfg = OfflineTrainerConfig(**{**defaults, **options})
    logger = RunLogger(run_dir, tensorboard=False, console=False)
    return OfflineTrainer(cfg, data, SeedRecordingEnv(), MinibatchRecordingAgent(), logger, run_dir, seed=seed)


def test_offline_trainer_evaluates_and_checkpoints_on_schedule_and_at_the_end(tmp_path):
    trainer = tiny_offline_trainer(
        tmp_path, seed=3, total_updates=10, eval_every=4, checkpoint_every=4, keep_checkpoints=0
    )
    results = trainer.train()
    assert results["updates"] == trainer.agent.updates == 10
    assert [int(r["step"]) for r in metric_rows(tmp_path) if r.get("eval/success_rate")] == [4, 8, 10]
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step_*.pt"))] == [
        f"step_{step:09d}.pt" for step in (4, 8, 10)
    ]
    # every evaluation replays the same episodes, seeded by the run seed (10_000 + seed, as online)
    assert trainer.eval_env.seeds == [10_003, 10_004] * 3


def test_offline_minibatches_and_evaluations_follow_the_run_seed(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        trainer = tiny_offline_trainer(tmp_path / name, seed=seed, total_updates=5)
        trainer.train()
        runs[name] = trainer
    assert runs["a"].agent.batches == runs["b"].agent.batches
    assert runs["a"].agent.batches != runs["c"].agent.batches
    assert runs["a"].eval_env.seeds != runs["c"].eval_env.seeds


def test_offline_resume_keeps_the_best_evaluation_of_the_interrupted_run(tmp_path):
    """All evaluations tie (success 1, return 0), so the best is the first: the resumed run must keep it."""
    options = dict(total_updates=12, eval_every=4, checkpoint_every=4)
    whole = tiny_offline_trainer(tmp_path / "whole", **options)
    whole.train()
    tiny_offline_trainer(tmp_path / "split", **{**options, "total_updates": 6}).train()
    resumed = tiny_offline_trainer(tmp_path / "split", **options)
    resumed.resume(tmp_path / "split")
    results = resumed.train()
    assert results["best"]["step"] == whole.best_eval["step"] == 4
    assert resumed.agent.batches == whole.agent.batches[6:]  # and the minibatch stream continues


def test_load_agent_builds_the_agent_with_the_runs_hyperparameters(tiny_run, tmp_path):
    """Fine-tuning or evaluating a checkpoint must use the run's config, not the agent's defaults."""
    from embodied_rl.envs import make_env
    from embodied_rl.trainers import load_agent

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.agent.gamma, cfg.agent.tau = 0.5, 0.25  # not the defaults; the saved weights still fit
    OmegaConf.save(cfg, run_dir / "config.yaml")
    env = make_env(OmegaConf.to_container(cfg.env, resolve=True))
    agent, loaded_cfg, ckpt = load_agent(run_dir, env=env)
    assert (agent.gamma, agent.tau) == (0.5, 0.25) and loaded_cfg.agent.gamma == 0.5
    for key, value in ckpt["agent"]["actor"].items():
        torch.testing.assert_close(agent.actor.state_dict()[key], value)


def test_offline_resume_drops_the_rows_logged_after_its_checkpoint(tmp_path):
    """A run killed after its step-8 checkpoint had logged steps 9 and 10: resuming logs them once."""
    options = dict(total_updates=10, eval_every=5, checkpoint_every=4, keep_checkpoints=0, log_every=1)
    tiny_offline_trainer(tmp_path, **options).train()
    resumed = tiny_offline_trainer(tmp_path, **options)
    resumed.resume(tmp_path / "checkpoints" / "step_000000008.pt")
    resumed.train()
    rows = metric_rows(tmp_path)
    assert [int(r["step"]) for r in rows if r.get("train/updates_per_second")] == list(range(1, 11))
    assert [int(r["step"]) for r in rows if r.get("eval/success_rate")] == [5, 10]


def test_rng_states_of_more_gpus_than_the_machine_has_restore_those_it_has(monkeypatch):
    """A run checkpointed on a 2-GPU node and resumed (device=auto) on a 1-GPU node."""
    from embodied_rl.trainers.checkpoint import capture_rng_state, restore_rng_state

    state = {k: v for k, v in capture_rng_state().items() if k != "cuda"}  # this machine's CPU streams
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    restore_rng_state({**state, "cuda": ["gpu0 state", "gpu1 state"]})
    assert restored == [("gpu0 state", 0)]


def test_a_checkpoint_restores_the_python_numpy_and_torch_random_streams(tmp_path):
    from embodied_rl.trainers import load_checkpoint, save_checkpoint
    from embodied_rl.trainers.checkpoint import restore_rng_state

    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    save_checkpoint(tmp_path, 1, {})
    expected = draws()
    draws()  # the streams move on, as the run goes on after its checkpoint
    restore_rng_state(load_checkpoint(tmp_path)["rng"])
    assert draws() == expected


def test_offline_sac_warns_that_it_is_not_an_offline_learner(tiny_dataset, tmp_path, capsys):
    plain = [o for o in OFFLINE if not o.startswith("experiment=")]
    results = train_in_process([*plain, "trainer=offline", "agent=sac", f"run_dir={tmp_path / 'sac'}"])
    assert results["agent"] == "sac" and results["updates"] == 60
    assert "warning: trainer=offline with agent=sac trains plain SAC" in capsys.readouterr().err
    train_in_process([*OFFLINE, f"run_dir={tmp_path / 'iql'}"])
    assert "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- settings of the wrong type, contradictions
@pytest.mark.parametrize(
    "override, message",
    [
        ("overwrite=no", "overwrite='no' (must be true or false)"),  # "no" would count as true and wipe a run
        ("logging.tensorboard=maybe", "logging.tensorboard='maybe' (must be true or false)"),
        ("trainer.progress=no", "trainer.progress='no' (must be true or false)"),
        ("trainer.asynchronous_envs=yes", "trainer.asynchronous_envs='yes' (must be true or false)"),
        ("trainer.num_envs=2.5", "trainer.num_envs=2.5 (must be an integer)"),
        ("agent.hidden_dims=32", "agent.hidden_dims=32 (must be a list of integers)"),
        ("agent.compile=no", "agent.compile='no' (must be true or false)"),
        ("env.shadows=no", "shadows must be true or false, got 'no'"),
        ("seed=-1", "seed=-1 (must be in [0, 4294967295])"),
        ("seed=abc", "seed='abc' (must be an integer)"),
        ("+foo=1", "unknown config key(s) foo"),
        ("+logging.colour=true", "unknown config key(s) logging.colour"),
        ("resume=true", "resume=true and overwrite=true contradict each other"),
    ],
)
def test_settings_of_the_wrong_kind_are_one_config_error(override, message, tmp_path):
    extra = ["overwrite=true"] if override == "resume=true" else []
    with pytest.raises(ConfigError, match=re.escape(message)):
        train_in_process([*TINY, override, *extra, f"run_dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()


def test_a_bare_task_name_is_the_same_run_as_the_full_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    short = [*TINY, "env.task=reach-v3", "trainer.total_steps=100", "trainer.checkpoint_every=0"]
    train_in_process(short)
    run_dir = tmp_path / "runs" / "sac" / "metaworld" / "reach-v3" / "seed1"
    assert "task: metaworld/reach-v3" in (run_dir / "config.yaml").read_text()
    results = train_in_process([*short, "env.task=metaworld/reach-v3", "resume=true", "trainer.total_steps=200"])
    assert results["steps"] == 200 and results["task"] == "metaworld/reach-v3"
    assert sorted(p.name for p in (tmp_path / "runs" / "sac").iterdir()) == ["metaworld"]


def test_resume_refuses_a_run_without_config_or_with_a_damaged_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100", "trainer.checkpoint_every=50"]
    train_in_process(args)
    latest = run_dir / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # cut short, as by a full disk
    with pytest.raises(ConfigError, match=re.escape(f"{latest} is damaged")) as error:
        train_in_process([*args, "resume=true", "trainer.total_steps=200"])
    # latest.pt is a hard link to step_000000100.pt, damaged with it: only the older file is offered
    assert "copy one of step_000000050.pt (an older state) to latest.pt" in str(error.value)
    (run_dir / "config.yaml").unlink()
    with pytest.raises(ConfigError, match="config.yaml is missing"):
        train_in_process([*args, "resume=true", "trainer.total_steps=200"])


def test_ctrl_c_ends_with_one_line_saying_how_to_resume(tmp_path):
    run_dir = tmp_path / "interrupted"
    args = [*TINY, f"run_dir={run_dir}", "trainer.total_steps=100000", "trainer.checkpoint_every=50", "overwrite=true"]
    proc = start_run_until(args, lambda: (run_dir / "checkpoints" / "latest.pt").exists())
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    # the hint is a command that works: the run's own arguments with resume=true instead of overwrite=true
    hint = re.search(r"interrupted: .* has a checkpoint at step \d+; continue it with: (.*)", stderr)
    assert hint, stderr[-2000:]
    command = shlex.split(hint[1])
    assert command[:2] == ["python", "scripts/train.py"] and command[-1] == "resume=true"
    assert "overwrite=true" not in command and f"run_dir={run_dir}" in command


def test_offline_refuses_a_dataset_of_another_task(tiny_dataset, tmp_path):
    other_task = ["env.task=metaworld/drawer-open-v3", "name=iql_reach_data"]  # same 39-d observations
    with pytest.raises(DatasetError, match="was collected on 'embodied_rl/metaworld-reach-v3'"):
        train_in_process(
            [*OFFLINE, *other_task, "trainer.dataset=embodied_rl/metaworld-reach-v3/tiny-v0", f"run_dir={tmp_path}/r"]
        )


def test_a_run_too_short_to_update_says_so(tmp_path, capsys):
    results = train_in_process([*TINY, "trainer.total_steps=50", "trainer.eval_every=0", f"run_dir={tmp_path}/r"])
    assert results["updates"] == 0
    assert "warning: trainer.total_steps=50 is below trainer.seed_steps=60" in capsys.readouterr().err
    train_in_process([*TINY, "trainer.total_steps=60", "trainer.eval_every=0", f"run_dir={tmp_path}/s"])
    assert "warning" not in capsys.readouterr().err


def test_whole_number_floats_are_integers(tmp_path):
    results = train_in_process([*TINY, "trainer.total_steps=1e2", "seed=2.0", f"run_dir={tmp_path / 'run'}"])
    assert results["steps"] == 100 and results["seed"] == 2
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.trainer.total_steps == 100 and isinstance(saved.seed, int)


def test_runs_made_with_a_bare_task_name_before_full_names_are_found_on_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    short = [*TINY, "env.task=reach-v3", "trainer.total_steps=100", "trainer.checkpoint_every=50"]
    train_in_process(short)
    old = tmp_path / "runs" / "sac" / "reach-v3" / "seed1"  # where such a run went before
    shutil.move(tmp_path / "runs" / "sac" / "metaworld" / "reach-v3" / "seed1", old)
    config = old / "config.yaml"
    config.write_text(config.read_text().replace("task: metaworld/reach-v3", "task: reach-v3"))
    more = [*short, "resume=true", "trainer.total_steps=200"]
    with pytest.raises(ConfigError, match=re.escape(f"resume it with run_dir={Path('runs/sac/reach-v3/seed1')}")):
        train_in_process(more)
    results = train_in_process([*more, f"run_dir={old}"])
    assert results["steps"] == 200


def test_a_run_sets_and_reports_its_torch_threads_and_refuses_a_bad_setting(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        train_in_process(
            [*TINY, f"run_dir={tmp_path / 'a'}", "threads=1", "logging.console=true", "trainer.total_steps=60"]
        )
        assert "[run] threads: 1 (threads=1)" in capsys.readouterr().out and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be auto or an integer >= 1"):
        train_in_process([*TINY, f"run_dir={tmp_path / 'b'}", "threads=0"])
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("launcher, jobs", [("local", 2), ("slurm", 1), (None, 1)])
def test_threads_auto_counts_the_parallel_jobs_of_a_local_sweep(launcher, jobs):
    from hydra.core.hydra_config import HydraConfig

    overrides = [f"hydra/launcher={launcher}"] if launcher else []
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert load_script("train").parallel_jobs() == jobs  # configs/hydra/launcher/local.yaml: n_jobs 2
    finally:
        HydraConfig.instance().cfg = None

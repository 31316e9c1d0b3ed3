"""scripts/plot.py, scripts/summarize.py, scripts/evaluate.py and scripts/collect.py: overlapping arguments, bad
or missing metrics, results.json, stale videos, a checkpoint's env, mismatched envs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from script_helpers import CONFIGS, REPO, load_script, train_in_process


def write_metrics(run_dir: Path, values: list[float]) -> None:
    run_dir.mkdir(parents=True)
    rows = [f"{100 * (i + 1)},{v}," for i, v in enumerate(values)]
    (run_dir / "metrics.csv").write_text("\n".join(["step,eval/return_mean,train/loss", *rows]) + "\n")


@pytest.fixture
def seeds(tmp_path) -> Path:
    """runs/sac/reach/seed{1,2}/metrics.csv."""
    for seed in (1, 2):
        write_metrics(tmp_path / "runs" / "sac" / "reach" / f"seed{seed}", [seed, seed + 1])
    return tmp_path / "runs" / "sac"


def test_plot_counts_runs_of_overlapping_arguments_once(seeds):
    groups = load_script("plot").group_runs([seeds, seeds / "reach", seeds / "reach" / "seed1"])
    assert {label: len(paths) for label, paths in groups.items()} == {str(seeds / "reach"): 2}


def test_plot_rejects_an_unknown_metric_listing_the_columns(seeds, tmp_path):
    out = tmp_path / "curves.png"
    with pytest.raises(SystemExit) as exc:
        load_script("plot").main([str(seeds), "--metric", "eval/return_maen", "--out", str(out)])
    message = str(exc.value.code)
    assert "eval/return_maen" in message and "eval/return_mean, step, train/loss" in message
    assert not out.exists()


def test_plot_curve_is_the_mean_and_std_over_seeds_on_the_steps_they_share(tmp_path):
    """Seeds evaluated at different steps: each is interpolated onto the steps every seed covers."""
    csvs = []
    for seed, rows in ((1, ["100,0", "200,2", "300,4"]), (2, ["150,10", "250,10"])):
        (tmp_path / f"seed{seed}").mkdir()
        csvs.append(tmp_path / f"seed{seed}" / "metrics.csv")
        csvs[-1].write_text("\n".join(["step,eval/return_mean", *rows]) + "\n")
    steps, mean, std, n = load_script("plot").curve(csvs, "eval/return_mean", points=3)
    np.testing.assert_allclose(steps, [150, 200, 250])  # seed 1 reads 1, 2, 3 there; seed 2 reads 10
    np.testing.assert_allclose(mean, [5.5, 6.0, 6.5])
    np.testing.assert_allclose(std, [4.5, 4.0, 3.5])
    assert n == 2


def write_results(run_dir: Path, final: dict[str, float]) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    (run_dir / "results.json").write_text(json.dumps({"final": final, "best": final, "steps": 100}))


def test_summarize_counts_runs_of_overlapping_arguments_once(tmp_path):
    group = tmp_path / "runs" / "sac"
    for seed, success in ((1, 0.0), (2, 1.0)):
        write_results(group / f"seed{seed}", {"success_rate": success})
    args = [str(tmp_path / "runs"), str(group), str(group / "seed1"), "--metric", "success_rate"]
    text = load_script("summarize").main(args)
    assert text.splitlines()[2] == f"| {group} | 2 | 100 | 0.50 ± 0.50 | 0.50 ± 0.50 |"


def test_summarize_says_how_many_runs_a_mean_is_over_when_some_lack_the_metric(tmp_path):
    group = tmp_path / "runs" / "iql"
    write_results(group / "seed1", {"success_rate": 1.0, "normalized_score": 40.0})
    write_results(group / "seed2", {"success_rate": 0.0, "normalized_score": 60.0})
    write_results(group / "seed3", {"success_rate": 0.5})
    text = load_script("summarize").main([str(group), "--metric", "success_rate", "--metric", "normalized_score"])
    row = f"| {group} | 3 | 100 | 0.50 ± 0.41 | 0.50 ± 0.41 | 50.00 ± 10.00 (n=2) | 50.00 ± 10.00 (n=2) |"
    assert text.splitlines()[2] == row


def test_summarize_gap_pairs_the_arms_per_task_with_a_welch_interval(tmp_path):
    from scipy import stats

    semi, oracle = [40.0, 50.0, 60.0], [70.0, 80.0, 90.0, 100.0]
    for task, shift in (("Hopper", 0.0), ("Walker", 10.0)):
        for arm, scores in (("semi_k1", semi), ("oracle_k1", oracle)):
            for seed, score in enumerate(scores, 1):
                write_results(tmp_path / f"runs/ssorl_{arm}/{task}/seed{seed}", {"normalized_score": score + shift})
    write_results(tmp_path / "runs/ssorl_semi_k2/Hopper/seed1", {"normalized_score": 1.0})  # no oracle_k2 partner
    summarize = load_script("summarize")
    text = summarize.main([str(tmp_path / "runs"), "--metric", "normalized_score", "--gap", "semi_k1:oracle_k1"])
    rows = [line for line in text.splitlines() if line.startswith(f"| {tmp_path}/runs/ssorl_semi_k1/")]
    gaps = [row for row in rows if row.count("|") == 7]
    assert [row.split(" | ")[0] for row in gaps] == [
        f"| {tmp_path}/runs/ssorl_semi_k1/{t}" for t in ("Hopper", "Walker")
    ]
    # Welch by hand: the difference of means and t at Welch-Satterthwaite's degrees of freedom
    va, vb = np.var(semi, ddof=1) / 3, np.var(oracle, ddof=1) / 4
    half = stats.t.ppf(0.975, (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)) * np.sqrt(va + vb)
    interval = f"[{-35 - half:.2f}, {-35 + half:.2f}] |"  # the same on both tasks: the shift cancels
    assert gaps[0].split(" | ")[1:] == ["3, 4", "50.00 ± 8.16", "85.00 ± 11.18", "-35.00", interval]
    assert gaps[1].split(" | ")[1:] == ["3, 4", "60.00 ± 8.16", "95.00 ± 11.18", "-35.00", interval]
    with pytest.raises(SystemExit, match="no group holds 'semi_k2' with a partner holding 'oracle_k2'"):
        summarize.main([str(tmp_path / "runs"), "--metric", "normalized_score", "--gap", "semi_k2:oracle_k2"])
    with pytest.raises(SystemExit):
        summarize.main([str(tmp_path / "runs"), "--gap", "semi_k1"])


def test_benchmark_reports_updates_per_second_relative_to_the_plain_baseline():
    import time
    from types import SimpleNamespace

    class Sleeper:
        def __init__(self, seconds):
            self.seconds = seconds

        def update(self, batch):
            time.sleep(self.seconds)

    agents = {"plain_eager": Sleeper(0.002), "eager": Sleeper(0.008)}  # at most 500 and 125 updates/s
    args = SimpleNamespace(updates=6, repeats=2, batch_size=8)
    rows = {row["mode"]: row for row in load_script("benchmark").benchmark_updates("sac", agents, {}, "cpu", args)}
    # generous bounds: a loaded CI machine may oversleep by a millisecond or more
    assert 100 < rows["plain_eager"]["updates_per_s"] <= 500 and rows["plain_eager"]["over_plain"] == 1.0
    assert 0.1 < rows["eager"]["over_plain"] < 0.6  # ~0.25: four times slower than the baseline


# A tiny online run: checkpoints at steps 50 and 100 (latest.pt is the second), one evaluation.
TINY = [
    "env.task=metaworld/reach-v3",
    "env.time_limit=20",
    "env.shadows=false",
    "agent.hidden_dims=[16,16]",
    "trainer.total_steps=100",
    "trainer.seed_steps=60",
    "trainer.batch_size=16",
    "trainer.eval_every=100",
    "trainer.eval_episodes=1",
    "trainer.eval_videos=0",
    "trainer.checkpoint_every=50",
    "trainer.progress=false",
    "trainer.replay_size=200",
    "logging.console=false",
    "logging.tensorboard=false",
    "device=cpu",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_in_process([*TINY, f"run_dir={run_dir}"])
    return run_dir


def test_evaluate_records_the_seed_and_the_step_file_behind_latest(tiny_run, tmp_path):
    args = [str(tiny_run), "--episodes", "2", "--videos", "0", "--seed", "7", "--device", "cpu"]
    load_script("evaluate").main([*args, "--out", str(tmp_path), "env.time_limit=5"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seed"] == 7 and [r["seed"] for r in saved["per_episode"]] == [7, 8]
    assert saved["checkpoint"] == str((tiny_run / "checkpoints" / "step_000000100.pt").resolve())
    assert saved["step"] == 100


def test_evaluate_acts_deterministically_so_its_seed_reproduces_the_results(tiny_run, tmp_path):
    args = [str(tiny_run), "--episodes", "2", "--videos", "0", "--device", "cpu", "env.time_limit=10"]
    first = load_script("evaluate").main([*args, "--out", str(tmp_path / "first")])
    again = load_script("evaluate").main([*args, "--out", str(tmp_path / "again")])
    assert [r["return"] for r in first["per_episode"]] == [r["return"] for r in again["per_episode"]]


def test_evaluate_records_videos_at_the_requested_size(tiny_run, tmp_path):
    import imageio.v2 as imageio

    args = [str(tiny_run), "--episodes", "1", "--videos", "1", "--video-size", "24", "--device", "cpu"]
    load_script("evaluate").main([*args, "--out", str(tmp_path), "env.time_limit=2"])
    with imageio.get_reader(tmp_path / "videos" / "episode_000.mp4") as reader:
        frames = [np.asarray(frame) for frame in reader]
    assert len(frames) == 3 and frames[0].shape == (24, 24, 3)  # the reset frame, then one per step


def test_evaluate_rejects_counts_and_a_frame_rate_out_of_range(tmp_path, capsys):
    for option, value, message in [
        ("--fps", "0", "must be > 0"),
        ("--fps", "-5", "must be > 0"),
        ("--episodes", "0", "must be >= 1"),
        ("--videos", "-1", "must be >= 0"),
        ("--video-size", "0", "must be >= 1"),
    ]:
        with pytest.raises(SystemExit) as exc:
            load_script("evaluate").main([str(tmp_path), option, value])
        assert exc.value.code == 2 and f"{option}: {message}, got {value}" in capsys.readouterr().err


def test_cli_number_states_its_range_and_writable_names_the_reason(tmp_path):
    import argparse

    from embodied_rl import cli

    fraction, count = cli.number(float, "(0, 1]"), cli.number(int, ">= 4", "split among 4 envs")
    assert fraction("1") == 1.0 and count("4") == 4 and fraction.__name__ == "float"
    for parse, text, message in [
        (fraction, "0", "must be in (0, 1], got 0"),
        (fraction, "nan", "must be in (0, 1], got nan"),
        (count, "3", "must be >= 4 (split among 4 envs), got 3"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)
    with pytest.raises(ValueError):  # argparse: "invalid int value: '2.5'"
        count("2.5")
    with pytest.raises(ValueError, match="unknown range"):
        cli.number(int, "=> 1")
    assert cli.writable(tmp_path / "a" / "f.json") == tmp_path / "a" / "f.json" and (tmp_path / "a").is_dir()
    assert not (tmp_path / "a" / "f.json").exists()  # checked, not created
    cli.writable(tmp_path / "b" / "c", directory=True)
    assert (tmp_path / "b" / "c").is_dir()
    (tmp_path / "a" / "f.json").write_text("")
    with pytest.raises(cli.NotWritable, match="^is a directory$"):
        cli.writable(tmp_path / "a")
    for path, directory in ((tmp_path / "a" / "f.json" / "x", False), (tmp_path / "a" / "f.json" / "d", True)):
        with pytest.raises(cli.NotWritable, match="(?i)not a directory|file exists"):  # below a file
            cli.writable(path, directory=directory)


def test_evaluate_explains_an_env_the_checkpoint_does_not_fit(tiny_run, tmp_path, capsys):
    args = [str(tiny_run), "--episodes", "1", "--videos", "0", "--device", "cpu", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        load_script("evaluate").main([*args, "env.task=mujoco/Hopper-v5", "env.time_limit=5"])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: the checkpoint's agent does not fit this env (observations (11,)")
    assert "\n" not in error


def test_evaluate_reports_a_run_config_the_agent_refuses_as_one_error(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("gamma: 0.99", "gamma: 1.5"))
    with pytest.raises(SystemExit) as exc:
        load_script("evaluate").main([str(run), "--episodes", "1", "--videos", "0", "--device", "cpu"])
    assert exc.value.code == 2
    assert "gamma=1.5 (must be in [0, 1])" in capsys.readouterr().err


def test_evaluate_removes_the_videos_of_a_previous_evaluation(tiny_run, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("episode_000.mp4", "episode_001.mp4"):
        (videos / name).write_bytes(b"old")
    (videos / "notes.txt").write_text("not ours")
    args = [str(tiny_run), "--episodes", "1", "--videos", "1", "--video-size", "32", "--device", "cpu"]
    load_script("evaluate").main([*args, "--out", str(tmp_path), "env.time_limit=3"])
    assert sorted(p.name for p in videos.iterdir()) == ["episode_000.mp4", "notes.txt"]
    assert (videos / "episode_000.mp4").read_bytes() != b"old"  # rewritten by this evaluation


def test_an_evaluation_that_fails_midway_leaves_the_previous_one_whole(tiny_run, tmp_path, monkeypatch):
    """As a killed one would: no new video beside the old results.json (crash audit)."""
    import embodied_rl.trainers

    def fail_after_one_video(*args, video_dir, **kwargs):
        Path(video_dir).mkdir(parents=True)
        (Path(video_dir) / "episode_000.mp4").write_bytes(b"new")
        raise RuntimeError("evaluation failed")

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "episode_000.mp4").write_bytes(b"old")
    (tmp_path / "results.json").write_text('{"seed": 100000}')
    monkeypatch.setattr(embodied_rl.trainers, "evaluate_policy", fail_after_one_video)
    args = [str(tiny_run), "--episodes", "1", "--videos", "1", "--device", "cpu", "--out", str(tmp_path)]
    with pytest.raises(RuntimeError, match="evaluation failed"):
        load_script("evaluate").main([*args, "--seed", "7", "env.time_limit=3"])
    assert (videos / "episode_000.mp4").read_bytes() == b"old"
    assert (tmp_path / "results.json").read_text() == '{"seed": 100000}'
    assert not (tmp_path / ".partial").exists()  # a failure cleans up; a kill leaves it to the next evaluation
    monkeypatch.undo()
    load_script("evaluate").main([*args, "--seed", "7", "--video-size", "32", "env.time_limit=3"])
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["seed"] == 7 and result["per_episode"][0]["video"] == str(videos / "episode_000.mp4")
    assert (videos / "episode_000.mp4").read_bytes() not in (b"old", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "videos"]  # no staging folder left


COLLECT = ["episodes=1", "reference.min_score=0", "reference.max_score=1", "progress=false", "policy.kind=checkpoint"]


def test_collect_takes_the_env_of_the_checkpoints_run(tiny_run, tmp_path, monkeypatch, capsys):
    from embodied_rl.data import open_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    overrides = [*COLLECT, f"policy.checkpoint={tiny_run}", "env.time_limit=4", "seed=5"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("collect", overrides=overrides)
    load_script("collect").collect(cfg, overrides)
    dataset_id = "embodied_rl/metaworld-reach-v3/checkpoint-v0"  # the run's task, not collect's drawer-open
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"[collect] wrote {dataset_id} to ")
    env = open_dataset(dataset_id).storage.metadata["embodied_rl"]["env"]
    assert (env["task"], env["shadows"], env["time_limit"], env["seed"]) == ("metaworld/reach-v3", False, 4, 5)


def test_collect_reference_scores_are_the_random_and_the_expert_returns_unless_given():
    from embodied_rl.envs import make_env

    collect = load_script("collect")
    overrides = ["env.time_limit=60", "reference.episodes=1", "progress=false"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("collect", overrides=overrides)
        given = compose("collect", overrides=[*overrides, "reference.min_score=-1", "reference.max_score=7"])
    env = make_env(OmegaConf.to_container(cfg.env, resolve=True))
    ref_min, ref_max, details = collect.reference_scores(cfg, env)
    assert ref_min == details["random"]["return_mean"] < ref_max == details["expert"]["return_mean"]
    assert collect.reference_scores(given, env) == (-1.0, 7.0, {})


def test_collect_explains_an_env_the_checkpoint_does_not_fit(tiny_run, tmp_path):
    """The Hydra script (subprocess): one error line and exit code 2."""
    argv = [*COLLECT, f"policy.checkpoint={tiny_run}", "env.task=mujoco/Hopper-v5", f"hydra.run.dir={tmp_path}"]
    environ = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "datasets")}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "collect.py"), *argv], capture_output=True, text=True, env=environ
    )
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip()
    assert error.startswith("[collect] error: the checkpoint's agent does not fit this env (observations (11,)")
    assert "\n" not in error


def test_collect_refuses_zero_reference_episodes_and_flags_given_as_words():
    collect = load_script("collect")
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        no_reference = compose("collect", overrides=["env.task=metaworld/reach-v3", "reference.episodes=0"])
        worded = compose("collect", overrides=["env.task=metaworld/reach-v3", "overwrite=no"])
    with pytest.raises(ValueError, match=re.escape("reference.episodes=0 (must be >= 1)")):
        collect.collect(no_reference)
    with pytest.raises(ValueError, match=re.escape("overwrite='no' (must be true or false)")):
        collect.collect(worded)

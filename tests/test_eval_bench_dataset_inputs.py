"""Bad input to scripts/evaluate.py, scripts/benchmark.py and scripts/make_datasets.py: one error line (or an
argparse error) before any work, results of evaluations with overrides kept apart, damaged run directories,
and runs whose medium tier would be the expert's."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from script_helpers import load_script
from test_scripts_cli import tiny_run  # noqa: F401  (module fixture: a reach-v3 SAC run, checkpoints 50 and 100)

from embodied_rl.pipelines.offline_datasets import RecipeError, metaworld_tiers, sac_run_tiers

EVAL = ["--episodes", "1", "--videos", "0", "--device", "cpu"]


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:  # noqa: F811
    """A copy of the tiny run whose latest.pt is a hard link to step_000000100.pt, as train.py leaves it."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    checkpoints = run / "checkpoints"
    (checkpoints / "latest.pt").unlink()
    os.link(checkpoints / "step_000000100.pt", checkpoints / "latest.pt")
    return run


def fail_if_evaluated(monkeypatch) -> None:
    import embodied_rl.trainers

    def evaluate_policy(*args, **kwargs):
        raise AssertionError("episodes ran")

    monkeypatch.setattr(embodied_rl.trainers, "evaluate_policy", evaluate_policy)


# ---------------------------------------------------------------- evaluate.py


def test_evaluation_with_overrides_does_not_replace_the_plain_one(run_copy, capsys):
    evaluate = load_script("evaluate")
    step_dir = run_copy / "eval" / "step_000000100"
    evaluate.main([str(run_copy), *EVAL])
    plain = (step_dir / "results.json").read_text()
    evaluate.main([str(run_copy), *EVAL, "env.task=metaworld/reach-v3", "env.time_limit=3"])
    assert (step_dir / "results.json").read_text() == plain
    other = json.loads((step_dir / "env.task=metaworld_reach-v3,env.time_limit=3" / "results.json").read_text())
    assert other["overrides"] == ["env.task=metaworld/reach-v3", "env.time_limit=3"]
    assert "note:" not in capsys.readouterr().err  # the run's own task


def test_evaluation_on_another_task_says_so(run_copy, capsys):
    load_script("evaluate").main([str(run_copy), *EVAL, "env.task=push-v3", "env.time_limit=2"])
    err = capsys.readouterr().err
    assert "note: the policy was trained on metaworld/reach-v3; this env is metaworld/push-v3" in err
    assert "Warning" not in err  # load_agent's warning is said once, as the note
    assert (run_copy / "eval" / "step_000000100" / "env.task=push-v3,env.time_limit=2" / "results.json").exists()


def test_load_agent_warns_when_the_env_is_of_another_task(run_copy):
    """Meta-World's tasks share their spaces, so nothing else would tell a Python user."""
    import warnings

    from embodied_rl.envs import make_env
    from embodied_rl.trainers import load_agent
    from embodied_rl.trainers.loading import OtherTaskWarning

    with pytest.warns(OtherTaskWarning, match="trained on metaworld/reach-v3; this env is metaworld/push-v3"):
        load_agent(run_copy, env=make_env(task="push-v3"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OtherTaskWarning)
        load_agent(run_copy, env=make_env(task="reach-v3", action_repeat=2, time_limit=30))  # through wrappers


def test_override_folder_names_are_filesystem_safe():
    out_dir = load_script("evaluate").out_dir
    base = Path("eval")
    assert out_dir(base, []) == base
    assert out_dir(base, ["env.distractors=test"]) == base / "env.distractors=test"
    assert out_dir(base, ["env.task=mujoco/Hopper-v5", "agent.hidden_dims=[8, 8]"]).name == (
        "env.task=mujoco_Hopper-v5,agent.hidden_dims=_8,_8_"
    )
    assert out_dir(base, ["../x=1"]).name == "_.._x=1"
    long = out_dir(base, [f"env.task={'a' * 300}"]).name
    assert len(long) == 120 and long != out_dir(base, [f"env.task={'a' * 299}"]).name


def evaluate_error(argv: list[str], capsys) -> str:
    """The one error line of `evaluate.py <argv>`, which must exit with status 2 (a user error, as argparse's)."""
    with pytest.raises(SystemExit) as exc:
        load_script("evaluate").main(argv)
    error = capsys.readouterr().err.strip()
    assert exc.value.code == 2, error
    assert error.startswith("error: ") and "\n" not in error, error
    return error


def test_evaluate_checks_the_output_folder_before_any_episode(run_copy, tmp_path, monkeypatch, capsys):
    fail_if_evaluated(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    error = evaluate_error([str(run_copy), *EVAL, "--out", str(blocker / "out")], capsys)
    assert error.startswith(f"error: cannot write the results to {blocker / 'out'}: ")
    (run_copy / "eval").write_text("")  # the default folder cannot be made either
    error = evaluate_error([str(run_copy), *EVAL], capsys)
    assert re.match(r"error: cannot write the results to .*eval/step_000000100: ", error)


def test_evaluate_creates_the_parents_of_out(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "a" / "b"
    load_script("evaluate").main([str(tiny_run), *EVAL, "--out", str(out), "env.time_limit=2"])
    assert (out / "results.json").exists()


def test_evaluate_rejects_a_negative_seed_and_a_scripted_locomotion_task(tmp_path, capsys):
    evaluate = load_script("evaluate")
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(tmp_path), "--seed", "-1"])
    assert exc.value.code == 2 and "--seed: must be >= 0, got -1" in capsys.readouterr().err
    error = evaluate_error(["--scripted", "mujoco/Hopper-v5", "--episodes", "1"], capsys)
    assert error.startswith("error: scripted policies exist only for Meta-World tasks")


@pytest.mark.parametrize("text", ["", "a: [1\n", "seed: 1\n"])
def test_evaluate_names_a_damaged_config_yaml(run_copy, text, capsys):
    config = run_copy / "config.yaml"
    config.write_text(text)
    assert evaluate_error([str(run_copy), *EVAL], capsys).startswith(f"error: {config} ")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", None])
def test_evaluate_names_a_damaged_checkpoint_and_the_others_of_the_run(run_copy, content, capsys):
    checkpoint = run_copy / "checkpoints" / "step_000000100.pt"  # latest.pt links to it
    if content is None:  # a readable file, but not a checkpoint of train.py
        torch.save({"weights": 1}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    with pytest.raises(SystemExit) as exc:
        load_script("evaluate").main([str(run_copy), *EVAL])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and str(checkpoint) in error and "\n" not in error
    assert error.endswith("that could be evaluated instead: step_000000050.pt")


def test_evaluate_says_there_is_no_such_checkpoint_and_lists_the_runs(run_copy, tmp_path, monkeypatch, capsys):
    """A mistyped checkpoint is not "no config.yaml in <the .pt path>" (new-user walkthrough)."""
    fail_if_evaluated(monkeypatch)
    listing = f"; checkpoints of {run_copy}: step_000000050.pt, step_000000100.pt, latest.pt"
    for missing in (run_copy / "checkpoints" / "step_999.pt", run_copy / "step_999.pt"):
        assert evaluate_error([str(missing), *EVAL], capsys) == f"error: no such checkpoint: {missing}{listing}"
    elsewhere = tmp_path / "nowhere" / "checkpoints" / "step_1.pt"  # no run directory above it
    assert evaluate_error([str(elsewhere), *EVAL], capsys) == f"error: no such checkpoint: {elsewhere}"
    folder = tmp_path / "runs" / "sac"
    assert evaluate_error([str(folder), *EVAL], capsys) == f"error: no such run directory or checkpoint: {folder}"
    shutil.rmtree(run_copy / "checkpoints")  # a run killed before its first checkpoint
    assert evaluate_error([str(run_copy), *EVAL], capsys) == (
        f"error: no checkpoint at {run_copy / 'checkpoints' / 'latest.pt'}; "
        f"the run directory {run_copy} has no checkpoints yet"
    )


def test_evaluate_exits_2_on_an_unknown_task_or_env_setting(run_copy, monkeypatch, capsys):
    """As train.py and collect.py do: one error line and status 2, scripted or with a checkpoint."""
    fail_if_evaluated(monkeypatch)
    scripted = ["--scripted", "metaworld/drawer-opn-v3", "--episodes", "1"]
    for argv in (scripted, [str(run_copy), *EVAL, "env.task=metaworld/drawer-opn-v3"]):
        error = evaluate_error(argv, capsys)
        assert error.startswith("error: Unknown task 'metaworld/drawer-opn-v3'. Did you mean: metaworld/drawer-open-v3")
    scripted, checkpoint = ["--scripted", "reach-v3", "--episodes", "1"], [str(run_copy), *EVAL]
    for argv, message in [
        ([*scripted, "env.obs_mode=depth"], "obs_mode must be one of"),
        ([*checkpoint, "env.obs_mode=depth"], "obs_mode must be one of"),
        ([*scripted, "env.colour=1"], "unknown env option(s) ['colour']"),
        ([*checkpoint, "env.colour=1"], "bad override env.colour: Key 'colour' is not in struct"),  # the run's config
    ]:
        assert message in evaluate_error(argv, capsys)


def test_evaluate_summary_names_the_step_update_or_scripted_policy(run_copy, tmp_path, capsys):
    evaluate = load_script("evaluate")
    evaluate.main([str(run_copy), *EVAL, "--out", str(tmp_path / "online"), "env.time_limit=2"])
    assert capsys.readouterr().out.startswith("[eval] metaworld/reach-v3 step 100: success ")
    evaluate.main(["--scripted", "reach-v3", *EVAL, "--out", str(tmp_path / "scripted"), "env.time_limit=2"])
    assert capsys.readouterr().out.startswith("[eval] metaworld/reach-v3 scripted: success ")
    config = OmegaConf.load(run_copy / "config.yaml")  # an offline run counts gradient updates
    config.trainer.kind, config.trainer.dataset = "offline", "not-built"
    OmegaConf.save(config, run_copy / "config.yaml")
    evaluate.main([str(run_copy), *EVAL, "--out", str(tmp_path / "offline"), "env.time_limit=2"])
    assert capsys.readouterr().out.startswith("[eval] metaworld/reach-v3 update 100: success ")


# ---------------------------------------------------------------- make_datasets.py


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["metaworld", "--time-limit", "0"], "--time-limit: must be >= 1, got 0"),
        (["metaworld", "--seed", "-1"], "--seed: must be >= 0, got -1"),
        (["metaworld", "--reference-episodes", "0"], "--reference-episodes: must be >= 1, got 0"),
        (["metaworld", "--episodes", "0"], "--episodes: must be >= 1, got 0"),
        (["mujoco", "--run", "r", "--reference-episodes", "0"], "--reference-episodes: must be >= 1, got 0"),
        (["mujoco", "--run", "r", "--eval-episodes", "0"], "--eval-episodes: must be >= 1, got 0"),
        (["mujoco", "--run", "r", "--medium-fraction", "0"], "--medium-fraction: must be in (0, 1], got 0"),
    ],
)
def test_make_datasets_rejects_counts_and_seeds_out_of_range(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script("make_datasets").main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_recipes_refuse_zero_reference_episodes(minari_root, tiny_run):  # noqa: F811
    with pytest.raises(RecipeError, match=r"reference_episodes=0 \(must be >= 1\)"):
        metaworld_tiers("drawer-open-v3", 1, ["random"], reference_episodes=0, progress=False)
    with pytest.raises(RecipeError, match=r"reference_episodes=0 \(must be >= 1\)"):
        sac_run_tiers(tiny_run, 1, ["random"], reference_episodes=0, progress=False)
    with pytest.raises(RecipeError, match=r"seed=-1 \(must be >= 0\)"):
        metaworld_tiers("drawer-open-v3", 1, ["random"], seed=-1, progress=False)
    with pytest.raises(RecipeError) as exc:  # every bad setting at once
        metaworld_tiers("drawer-open-v3", 0, ["random"], seed=-1, time_limit=0, medium=(-1, 2), progress=False)
    assert str(exc.value) == (
        "invalid recipe settings: episodes=0 (must be >= 1), seed=-1 (must be >= 0), time_limit=0 (must be None or "
        ">= 1), medium_noise_std=-1 (must be >= 0), medium_epsilon=2 (must be in [0, 1])"
    )
    with pytest.raises(RecipeError, match=r"medium_fraction=0 \(must be in \(0, 1\]\)"):
        sac_run_tiers(tiny_run, 1, ["random"], medium_fraction=0, progress=False)
    assert not any(minari_root.rglob("*"))  # nothing built


def test_make_datasets_checks_the_summary_path_before_building(minari_root, tmp_path, monkeypatch):
    import embodied_rl.pipelines.offline_datasets as recipes

    built = []
    monkeypatch.setattr(recipes, "metaworld_tiers", lambda task, *args, **kwargs: built.append(task) or [])
    script = load_script("make_datasets")
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["metaworld", "--tasks", "reach-v3", "--no-progress"]
    for summary in (blocker / "s.json", tmp_path):
        with pytest.raises(SystemExit, match=rf"^\[make_datasets\] error: cannot write --summary {summary}: "):
            script.main([*args, "--summary", str(summary)])
    assert built == []
    summary = tmp_path / "new" / "folder" / "s.json"
    script.main([*args, "--summary", str(summary)])
    assert built == ["reach-v3"] and json.loads(summary.read_text()) == []


def test_make_datasets_refuses_a_run_whose_medium_would_be_the_expert(minari_root, run_copy):
    """The tiny run keeps two checkpoints (50, 100; keep_checkpoints=2) and evaluated only at step 100."""
    script = load_script("make_datasets")
    args = ["mujoco", "--run", str(run_copy), "--episodes", "1", "--reference-episodes", "1", "--no-progress"]
    with pytest.raises(SystemExit, match=r"no eval/return_mean at a checkpoint before the expert step 100 .*"):
        script.main(args)
    with pytest.raises(SystemExit, match=r"medium step 100 is the expert step"):
        script.main([*args, "--medium-step", "100"])
    (run_copy / "checkpoints" / "step_000000050.pt").unlink()
    with pytest.raises(SystemExit, match=r"no checkpoint before the expert step 100 .*keep_checkpoints=0"):
        script.main([*args, "--select", "evaluate"])
    assert not any(minari_root.rglob("*"))  # nothing built
    rows = script.main([*args, "--tiers", "random,expert", "--episodes", "1"])  # no medium tier: fine
    assert [row["tier"] for row in rows] == ["random", "expert"]


# ---------------------------------------------------------------- benchmark.py


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repeats", "0"], "--repeats: must be >= 1, got 0"),
        (["--updates", "0"], "--updates: must be >= 1, got 0"),
        (["--pixel-updates", "0"], "--pixel-updates: must be >= 1, got 0"),
        (["--env-steps", "0"], "--env-steps: must be >= 4 (split among 4 envs), got 0"),
        (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (["--devices", "gpu"], "--devices must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["--devices", "cpu,mps"], "--devices must be auto, cpu, cuda or cuda:N, got 'mps'"),
        (["--devices", "cpu,cuda:0"], "--devices=cuda:0 requested but CUDA is not available"),
        (["--devices", "cuda"], "--devices=cuda requested but CUDA is not available"),
        (["--env-steps", "x"], "--env-steps: invalid int value: 'x'"),
    ],
)
def test_benchmark_rejects_bad_settings_before_measuring(args, message, no_gpu, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script("benchmark").main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_benchmark_rejects_a_cuda_index_torch_does_not_see(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    benchmark = load_script("benchmark")
    with pytest.raises(SystemExit):
        benchmark.parse_devices("cuda:1", __import__("argparse").ArgumentParser())
    assert "--devices=cuda:1 requested but torch sees 1 GPU(s)" in capsys.readouterr().err
    assert benchmark.parse_devices("cpu,cuda:0", None) == ["cpu", "cuda:0"]


def test_benchmark_checks_out_before_measuring_and_creates_its_folder(tmp_path, no_gpu, monkeypatch, capsys):
    benchmark = load_script("benchmark")
    measured = []
    monkeypatch.setattr(benchmark, "benchmark_iql", lambda args, device: measured.append(device) or [])
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker / "b.json", tmp_path):
        with pytest.raises(SystemExit) as exc:
            benchmark.main(["--only", "iql", "--out", str(out)])
        assert exc.value.code == 2 and f"--out {out}: cannot write there" in capsys.readouterr().err
    assert measured == []
    out = tmp_path / "new" / "b.json"
    benchmark.main(["--only", "iql", "--out", str(out)])
    assert measured == ["cpu"] and json.loads(out.read_text())["results"] == []

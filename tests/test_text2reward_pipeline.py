"""The Text2Reward pipeline (`experiment=text2reward`) as a user runs it, at tiny budgets: the generated arm against
a local OpenAI-compatible server (records saved, the program's rewards trained on, nothing asked again on resume),
a program that fails in its sandbox during training, the env_reward arm without any LLM, and bad settings refused
before any output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import train_in_process

from embodied_rl.trainers.builders import ConfigError

TASK = "metaworld/reach-v3"

DISTANCE = """Here is the reward.
```python
import numpy as np

def compute_dense_reward(obs, action):
    return -float(np.linalg.norm(obs.ee_position - obs.goal_position)) - 10.0
```
"""
# reports its terms: over a 20-step episode "offset" sums to exactly -200
WITH_COMPONENTS = """```python
import numpy as np

def compute_dense_reward(obs, action):
    reach = -float(np.linalg.norm(obs.ee_position - obs.goal_position))
    return reach - 10.0, {"reach": reach, "offset": -10.0}
```
"""
# passes the checks and a one-step smoke test (its random action has action[3] <= 0.9), then fails in training
FAILS_LATER = """```python
def compute_dense_reward(obs, action):
    if action[3] > 0.9:
        return float("nan")
    return 0.0
```
"""


def t2r_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        "experiment=text2reward",
        f"env.task={TASK}",
        "env.time_limit=20",
        "text2reward.generation.samples=1",
        "text2reward.smoke_episodes=1",
        "text2reward.smoke_steps=5",
        "agent.hidden_dims=[16,16]",
        "trainer.total_steps=60",
        "trainer.seed_steps=40",
        "trainer.batch_size=16",
        "trainer.eval_every=60",
        "trainer.eval_episodes=1",
        "trainer.eval_videos=0",
        "trainer.checkpoint_every=20",
        "trainer.log_every=20",
        "trainer.progress=false",
        "trainer.save_replay=false",
        "trainer.replay_size=1000",
        "logging.console=false",
        "logging.tensorboard=false",
        "device=cpu",
        f"run_dir={run_dir}",
        *extra,
    ]


def episode_returns(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [float(row["train/return"]) for row in rows if row.get("train/return")]


def test_generated_arm_trains_on_the_program_and_a_resume_asks_nothing(tmp_path):
    from llm_server import OpenAICompatibleServer

    run_dir = tmp_path / "run"
    with OpenAICompatibleServer(answer=lambda request: DISTANCE) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-llm"]
        results = train_in_process(t2r_args(run_dir, *llm))
        assert server.requests == 1
        assert results["steps"] == 60
        out = run_dir / "text2reward"
        candidates = json.loads((out / "candidates.json").read_text())
        assert candidates["instruction"].startswith("Move the")  # reach-v3's goal text, the default instruction
        (record,) = candidates["candidates"]
        assert record["accepted"] and "obs.goal_position" in record["code"] and record["smoke_test"]["ok"]
        assert record["smoke_test"]["mean_reward"] < -10  # the program's value, not Meta-World's (>= 0)
        assert (out / "program.py").read_text() == record["code"]
        requests = json.loads((out / "requests.json").read_text())
        assert len(requests) == 1 and "reach" in requests[0]["messages"][-1]["content"].lower()
        # every episode of 20 steps collected a reward below -10 per step: the program's, not the env's
        returns = episode_returns(run_dir)
        assert returns and all(r < -200 for r in returns)

        written = (out / "candidates.json").stat().st_mtime_ns
        more = t2r_args(run_dir, *llm, "resume=true", "trainer.total_steps=80")
        assert train_in_process(more)["steps"] == 80
        assert server.requests == 1  # nothing asked again
        assert (out / "candidates.json").stat().st_mtime_ns == written  # program.py read back, nothing generated

        # a new run with the replay backend is answered from the first run's cache alone
        replay = t2r_args(tmp_path / "replay", *llm, "llm.backend=replay")
        assert train_in_process(replay)["steps"] == 60
        assert server.requests == 1
        assert (tmp_path / "replay" / "text2reward" / "program.py").read_text() == record["code"]


def test_a_program_failing_during_training_ends_the_run_with_a_clear_error(tmp_path):
    from llm_server import OpenAICompatibleServer

    from embodied_rl.pipelines.text2reward import GeneratedRewardFailed

    run_dir = tmp_path / "run"
    with OpenAICompatibleServer(answer=lambda request: FAILS_LATER) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-llm"]
        # the smoke test's one step passes, then a random exploration step has action[3] > 0.9
        with pytest.raises(GeneratedRewardFailed, match="failed during training: .*returned"):
            train_in_process(t2r_args(run_dir, *llm, "text2reward.smoke_steps=1", "trainer.total_steps=100"))
    out = run_dir / "text2reward"
    assert json.loads((out / "failure.json").read_text())["during"] == "training"
    assert (out / "program.py").exists() and (out / "candidates.json").exists()


def test_a_program_failing_the_smoke_test_is_never_trained_on(tmp_path):
    from llm_server import OpenAICompatibleServer

    from embodied_rl.pipelines.text2reward import GeneratedRewardFailed

    broken = "```python\ndef compute_dense_reward(obs, action):\n    return 1.0 / 0.0\n```\n"
    run_dir = tmp_path / "run"
    with OpenAICompatibleServer(answer=lambda request: broken) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-llm"]
        with pytest.raises(GeneratedRewardFailed, match="no usable reward program.*smoke test"):
            train_in_process(t2r_args(run_dir, *llm))
    assert not (run_dir / "text2reward" / "program.py").exists()
    assert not (run_dir / "checkpoints").exists()


def test_best_of_n_trains_each_candidate_and_continues_the_best(tmp_path):
    from llm_server import OpenAICompatibleServer

    answers = {0: FAILS_LATER, 1: DISTANCE}  # sample 0 fails in its short training, sample 1 trains
    run_dir = tmp_path / "run"
    with OpenAICompatibleServer(answer=lambda request: answers[request.body["seed"]]) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-llm"]
        best_of = ["text2reward.generation.samples=2", "text2reward.best_of=2", "text2reward.candidate_steps=100"]
        overrides = [*best_of, "text2reward.smoke_steps=1", "trainer.total_steps=120", "trainer.eval_every=100"]
        results = train_in_process(t2r_args(run_dir, *llm, *overrides))
        assert server.requests == 2
    assert results["steps"] == 120
    out = run_dir / "text2reward"
    scores = json.loads((out / "best_of.json").read_text())
    assert "returned nan" in scores["0"]["failed"] and scores["1"]["steps"] == 100
    selected = json.loads((out / "selected.json").read_text())
    assert (
        selected["index"] == 1
        and (out / "program.py").read_text() == answers[1].split("```python\n")[1].split("```")[0]
    )
    assert (out / "candidate_1" / "metrics.csv").exists()
    # the run continued candidate 1's training: its own curves start after the candidate's 100 steps
    with open(run_dir / "metrics.csv") as f:
        assert all(int(row["step"]) > 100 for row in csv.DictReader(f))


def test_a_refinement_round_sends_the_statistics_and_feedback_and_trains_the_revision(tmp_path):
    from llm_server import OpenAICompatibleServer

    revised = DISTANCE.replace("- 10.0", "- 30.0")
    broken = "```python\ndef compute_dense_reward(obs, action):\n    return 1.0 / 0.0\n```\n"

    def answer(request):  # the first revision fails the smoke test, the follow-up's is good
        if "Please fix this" in request.text:
            return revised
        return broken if "We trained SAC" in request.text else WITH_COMPONENTS

    run_dir = tmp_path / "run"
    with OpenAICompatibleServer(answer=answer) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-llm"]
        refine = [
            "text2reward.refine_rounds=1",
            "text2reward.candidate_steps=60",
            "text2reward.feedback_text=Too slow.",
        ]
        assert train_in_process(t2r_args(run_dir, *llm, *refine))["steps"] == 60
        assert server.requests == 3
    out = run_dir / "text2reward"
    record = json.loads((out / "round_1.json").read_text())
    first, second = record["attempts"]
    prompt = first["messages"][-1]["content"]
    assert "Too slow." in prompt and "success rate" in prompt and "Training episodes" in prompt
    assert "offset -200.000 (-200.000 to -200.000)" in prompt and "reach -" in prompt  # the terms' episode sums
    assert record["components"][0]["components"]["offset"]["mean"] == pytest.approx(-200.0)
    assert first["problem"].startswith("smoke test") and "ZeroDivisionError" in first["problem"]
    assert second["problem"] is None and "smoke test" in second["messages"][-1]["content"]
    assert record["score"]["steps"] == 60 and record["curves"] and record["curves"][0]["return_mean"] < -200
    assert "- 30.0" in record["revised"] and (out / "program.py").read_text() == record["revised"]
    assert "- 10.0" in record["trained"]
    assert (out / "round_1" / "reward_components.jsonl").exists()
    assert all(r < -600 for r in episode_returns(run_dir))  # the revised program's reward (below -30 per step)


def test_best_candidate_prefers_success_then_best_success_then_the_first():
    from embodied_rl.pipelines.text2reward import best_candidate

    def score(final, best):
        return {"success_rate": final, "best_success_rate": best, "return_mean": 1e6}

    assert best_candidate({0: score(0.2, 0.5), 1: score(0.4, 0.4)}) == 1
    assert best_candidate({0: score(0.4, 0.4), 1: score(0.4, 0.6)}) == 1
    assert best_candidate({3: score(0.0, 0.0), 1: score(0.0, 0.0)}) == 1


def test_env_reward_arm_needs_no_llm(tmp_path):
    run_dir = tmp_path / "run"
    nowhere = ["llm.base_url=http://127.0.0.1:9/v1", "llm.max_attempts=1", "llm.cache_dir=null"]
    results = train_in_process(t2r_args(run_dir, "text2reward.arm=env_reward", *nowhere))
    assert results["steps"] == 60
    assert not (run_dir / "text2reward").exists()
    assert all(r >= 0 for r in episode_returns(run_dir))  # Meta-World's own reward


@pytest.mark.parametrize(
    "override, message",
    [
        ("text2reward.arm=llm", "arm"),
        ("+text2reward.candidate=3", "candidate"),
        ("text2reward.smoke_steps=0", "smoke_steps"),
        ("text2reward.best_of=0", "best_of"),
        ("text2reward.refine_rounds=-1", "refine_rounds"),
        ("text2reward.sandbox.memory_mb=-1", "memory_mb"),
        ("+text2reward.sandbox.disk_mb=1", "disk_mb"),
        ("+text2reward.generation.sample=2", "sample"),
        ("+llm.modle=x", "modle"),
    ],
)
def test_bad_settings_are_refused_before_any_output(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        train_in_process(t2r_args(run_dir, override))
    assert not run_dir.exists()


def test_sandbox_reward_wrapper_keeps_the_env_reward():
    import functools

    from embodied_rl.envs import make_env
    from embodied_rl.pipelines.text2reward import SandboxReward
    from embodied_rl.rewards.text2reward import SandboxLimits, SnapshotInfo, abstraction_for

    code = DISTANCE.split("```python\n")[1].split("```")[0]
    wrappers = [
        functools.partial(SnapshotInfo, abstraction=abstraction_for(TASK)),
        functools.partial(SandboxReward, source=code, limits=SandboxLimits()),
    ]
    env = make_env({"task": TASK, "time_limit": 5}, wrappers=wrappers)
    try:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        snapshot = info["snapshot"]
        expected = -np.linalg.norm(snapshot["ee_position"] - snapshot["goal_position"]) - 10.0
        assert reward == pytest.approx(expected) and info["env_reward"] >= 0
    finally:
        env.close()


def test_the_instruction_is_a_top_level_key_of_text2reward_runs_only():
    from embodied_rl.pipelines.base import pipeline_for
    from embodied_rl.runs import check_run_settings, compose_config

    cfg = compose_config(["experiment=text2reward", "instruction=Open the drawer wide."])
    check_run_settings(cfg)
    assert pipeline_for(cfg).settings.instruction == "Open the drawer wide."
    with pytest.raises(ConfigError, match="unknown config key.*instruction"):
        check_run_settings(compose_config(["experiment=iql", "+instruction=Open the drawer wide."]))


def test_locomotion_runs_are_judged_by_the_behaviours_criterion(tmp_path):
    hopper = ["env.task=mujoco/Hopper-v5", "text2reward.arm=env_reward"]
    with pytest.raises(ConfigError, match="no success flag.*hopper-forward"):
        train_in_process(t2r_args(tmp_path / "none", *hopper))
    with pytest.raises(ConfigError, match="is for mujoco/HalfCheetah-v5"):
        train_in_process(t2r_args(tmp_path / "wrong", *hopper, "text2reward.behaviour=halfcheetah-backward"))
    with pytest.raises(ConfigError, match="locomotion tasks"):
        train_in_process(t2r_args(tmp_path / "mw", "text2reward.behaviour=hopper-forward"))
    results = train_in_process(t2r_args(tmp_path / "run", *hopper, "text2reward.behaviour=hopper-forward"))
    assert results["steps"] == 60 and results["final"]["success_rate"] == 0.0  # 20 random steps: not 5 m

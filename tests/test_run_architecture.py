"""The run architecture (docs/developing.md): runs are library calls, methods are registered pipelines that declare
their outputs and resumable settings, one trainer skeleton, and the agent protocol's optional hooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from embodied_rl.pipelines import base as pipelines
from embodied_rl.runs import compose_config, train
from embodied_rl.trainers.builders import ConfigError

REPO = Path(__file__).resolve().parents[1]

TINY = [  # a complete online run in a few seconds
    "env.task=metaworld/reach-v3",
    "env.time_limit=20",
    "env.shadows=false",
    "agent.hidden_dims=[16,16]",
    "trainer.total_steps=60",
    "trainer.seed_steps=20",
    "trainer.batch_size=8",
    "trainer.eval_every=30",
    "trainer.eval_episodes=1",
    "trainer.eval_videos=0",
    "trainer.checkpoint_every=30",
    "trainer.log_every=10",
    "trainer.progress=false",
    "trainer.replay_size=500",
    "logging.console=false",
    "logging.tensorboard=false",
    "device=cpu",
]


def test_no_method_is_named_in_the_trainers_or_train_py():
    """Each method joins through the registry: nothing below pipelines/ and nothing in scripts/train.py names one."""
    files = [*sorted((REPO / "embodied_rl" / "trainers").glob("*.py")), REPO / "scripts" / "train.py"]
    agent_entry = re.compile(r'^\s*"\w+": "embodied_rl\.agents\.[\w.]+:\w+",$', re.MULTILINE)  # builders.AGENTS
    for name in pipelines.PIPELINES:
        named = [
            str(f.relative_to(REPO))
            for f in files
            if re.search(rf"\b{name}\b", agent_entry.sub("", f.read_text()), re.IGNORECASE)
        ]
        assert not named, f"{named} name the {name} pipeline"


def test_a_run_is_a_library_call_taking_a_plain_dict(tmp_path):
    """`embodied_rl.runs.train` without Hydra's command line: the same run from a composed config and from the
    plain dict of that config (e.g. an edited config.yaml)."""
    composed = compose_config([*TINY, f"run_dir={tmp_path / 'a'}"])
    results = train(composed)
    as_dict = OmegaConf.to_container(compose_config([*TINY, f"run_dir={tmp_path / 'b'}"]), resolve=True)
    assert isinstance(as_dict, dict)
    again = train(as_dict)
    assert results["steps"] == again["steps"] == 60 and results["final"] == again["final"]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["final"] == again["final"]


def test_compose_config_refuses_a_folder_without_configs(tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml in"):
        compose_config([], config_dir=tmp_path)


class ScaledReward(gym.RewardWrapper):
    def __init__(self, env, scale: float):
        super().__init__(env)
        self.scale = scale

    def reward(self, reward):
        return self.scale * reward


class ToySettings:
    def __init__(self, scale: float = 1.0, progress: bool = True, note: str = "none"):
        self.scale, self.progress, self.note = scale, progress, note

    @classmethod
    def from_mapping(cls, values):
        unknown = sorted(set(values) - {"scale", "progress", "note"})
        if unknown:
            raise ValueError(f"unknown toy config keys {unknown}")
        return cls(**values)


class ToyPipeline(pipelines.Pipeline):
    """A method that writes one output of its own and trains online on a scaled reward (a wrapper)."""

    name = "toy"
    settings_class = ToySettings
    trainer_kinds = ("online",)
    outputs = ("toy.json",)
    resumable = ("progress",)
    added_later = {"note": "none"}

    def run(self, run):
        (run.run_dir / "toy.json").write_text(json.dumps({"scale": self.settings.scale}))
        return run.train_online(wrappers=[lambda env: ScaledReward(env, self.settings.scale)])


@pytest.fixture
def toy_pipeline(monkeypatch):
    monkeypatch.setitem(pipelines.PIPELINES, "toy", f"{__name__}:ToyPipeline")


def train_rows(run_dir: Path) -> list[float]:
    import csv

    with (run_dir / "metrics.csv").open() as f:
        return [float(r["train/return"]) for r in csv.DictReader(f) if r.get("train/return")]


def test_a_registered_pipeline_runs_its_steps_with_its_wrappers_and_declares_its_outputs(toy_pipeline, tmp_path):
    plain = tmp_path / "plain"
    plain_results = train(compose_config([*TINY, f"run_dir={plain}"]))
    scaled = tmp_path / "scaled"
    scaled_results = train(compose_config([*TINY, f"run_dir={scaled}", "+toy.scale=-2.0"]))
    assert json.loads((scaled / "toy.json").read_text()) == {"scale": -2.0}
    # reach-v3's reward is positive: the evaluation env is wrapped too
    assert scaled_results["final"]["return_mean"] < 0 < plain_results["final"]["return_mean"]
    # the first episode is the warm-up's (random actions from the same seed): its return is the plain one times -2
    assert train_rows(scaled)[0] == pytest.approx(-2.0 * train_rows(plain)[0], rel=1e-5)

    # its resumable setting may change on resume, its other settings may not
    resume = [*TINY, f"run_dir={scaled}", "resume=true"]
    train(compose_config([*resume, "+toy.scale=-2.0", "+toy.progress=false", "trainer.total_steps=90"]))
    with pytest.raises(ConfigError, match=r"toy.scale: -2.0 -> 3.0"):
        train(compose_config([*resume, "+toy.scale=3.0", "trainer.total_steps=120"]))

    # overwrite=true removes the outputs of every registered pipeline, so a plain run there holds no toy.json
    train(compose_config([*TINY, f"run_dir={scaled}", "overwrite=true"]))
    assert not (scaled / "toy.json").exists()


def test_a_pipeline_setting_added_later_lets_older_runs_resume_at_its_old_value(toy_pipeline, tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config([*TINY, f"run_dir={run_dir}", "+toy.scale=1.0"]))
    more = [*TINY, f"run_dir={run_dir}", "+toy.scale=1.0", "resume=true", "trainer.total_steps=90"]
    with pytest.raises(ConfigError, match="toy.note: <unset> -> changed"):
        train(compose_config([*more, "+toy.note=changed"]))
    assert train(compose_config([*more, "+toy.note=none"]))["steps"] == 90


def test_a_pipeline_refuses_a_trainer_it_does_not_run_with_before_any_output(toy_pipeline, tmp_path):
    with pytest.raises(ConfigError, match="the toy pipeline runs with trainer=online, not trainer=offline"):
        train(compose_config([*TINY[:4], "trainer=offline", f"run_dir={tmp_path / 'r'}", "+toy.scale=1.0"]))
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="unknown toy config keys"):
        train(compose_config([*TINY, f"run_dir={tmp_path / 'r'}", "+toy.colour=red"]))
    assert not (tmp_path / "r").exists()


def test_two_pipelines_in_one_config_are_refused(toy_pipeline, tmp_path):
    with pytest.raises(ConfigError, match="one pipeline, but its config holds the settings of ssorl, toy"):
        train(compose_config(["experiment=ssorl", f"run_dir={tmp_path / 'r'}", "+toy.scale=1.0"]))


class RecurrentAgent:
    """An agent with the protocol's `reset(done_mask)` hook: records each call."""

    device = None

    def __init__(self):
        self.resets: list[list[bool]] = []

    def reset(self, done_mask):
        self.resets.append(done_mask.tolist())

    def act(self, obs, deterministic=False):
        return np.zeros((*np.shape(obs)[:-1], 1), np.float32)

    def update(self, batch):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class ThreeSteps(gym.Env):
    """Episodes of 3 steps (truncated)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 0.0, False, self.t == 3, {"success": False}


def test_recurrent_agents_are_reset_at_every_episode_start_in_training_and_evaluation(tmp_path):
    from types import SimpleNamespace

    from embodied_rl.trainers import OnlineTrainer, OnlineTrainerConfig
    from embodied_rl.trainers.evaluation import AgentPolicy, evaluate_policy

    envs = gym.vector.SyncVectorEnv([ThreeSteps] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    storage = SimpleNamespace(add=lambda *args, **named: None)
    logger = SimpleNamespace(log=lambda *args, **named: None, flush=lambda: None)
    cfg = OnlineTrainerConfig(total_steps=12, seed_steps=100, eval_every=0, checkpoint_every=0, log_every=0)
    agent = RecurrentAgent()
    trainer = OnlineTrainer(cfg, envs, None, agent, storage, logger, tmp_path)
    trainer.evaluate, trainer.save = (lambda: {"step": trainer.step}), (lambda: None)
    trainer.train()
    # both envs start, then both end an episode every 3 vector steps (6 vector steps in all)
    assert agent.resets == [[True, True], [True, True], [True, True]]

    agent.resets.clear()
    evaluate_policy(AgentPolicy(agent), ThreeSteps(), episodes=2)
    assert agent.resets == [[True], [True]]


@pytest.mark.parametrize("name", ["SAC", "IQL", "TD3BC", "BC"])
def test_every_agent_follows_the_agent_protocol(name):
    import embodied_rl.agents as agents

    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    agent = getattr(agents, name)(space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), hidden_dims=(8, 8))
    assert isinstance(agent, agents.Agent)


def test_prepare_fits_an_offline_agents_normaliser_once_and_never_over_loaded_statistics():
    import torch

    from embodied_rl.agents import IQL
    from embodied_rl.data import Transitions

    space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    obs = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    data = Transitions(obs, torch.zeros(2, 1), torch.zeros(2), obs, torch.zeros(2))
    agent = IQL(space, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), hidden_dims=(8, 8))
    agent.prepare(data)
    fitted = {k: v.clone() for k, v in agent.state_dict()["normalizer"].items()}  # live tensors: a copy
    torch.testing.assert_close(agent.normalize(obs).mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    agent.prepare(Transitions(obs * 10, torch.zeros(2, 1), torch.zeros(2), obs, torch.zeros(2)))  # already fitted
    restored = IQL(space, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), hidden_dims=(8, 8))
    restored.load_state_dict(agent.state_dict())
    restored.prepare(Transitions(obs * 10, torch.zeros(2, 1), torch.zeros(2), obs, torch.zeros(2)))
    for state in (agent.state_dict()["normalizer"], restored.state_dict()["normalizer"]):
        assert all(torch.equal(state[k], fitted[k]) for k in fitted)

"""RePo as a run (`experiment=repo`, `repo_cpu`): the online trainer feeding world-model sequences, the agent built
from configs/agent/repo.yaml, a tiny run end to end with its evaluation on the unseen test distractors, resume, and
bad settings refused before any output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from script_helpers import train_in_process

from embodied_rl.data.sequences import TransitionSequences
from embodied_rl.trainers.builders import ConfigError, make_agent

TINY_AGENT = [
    "agent.cnn_depth=4",
    "agent.embed_dim=64",
    "agent.deter_dim=16",
    "agent.stoch_dim=4",
    "agent.hidden_dim=16",
]


def repo_args(run_dir, *extra: str) -> list[str]:
    return [
        "experiment=repo_cpu",
        f"run_dir={run_dir}",
        "trainer.total_steps=60",
        "trainer.seed_steps=40",
        "trainer.batch_size=2",
        "repo.seq_len=8",
        "trainer.eval_every=60",
        "trainer.eval_episodes=1",
        "trainer.eval_videos=0",
        "trainer.checkpoint_every=30",
        "env.time_limit=20",
        "repo.test_episodes=1",
        "repo.test_videos=1",
        "trainer.replay_size=1000",
        "trainer.progress=false",
        "logging.console=false",
        "logging.tensorboard=false",
        "device=cpu",
        *TINY_AGENT,
        *extra,
    ]


def frames(value: int, n: int = 2) -> np.ndarray:
    return np.full((n, 4, 4, 3), value, dtype=np.uint8)


def test_transition_sequences_write_the_world_model_layout():
    store = TransitionSequences.create(64, (4, 4, 3), 1, 3, 2, "cpu", torch.uint8)
    action = np.array([[0.5], [-0.5]], dtype=np.float32)
    # env 0: 0 -> 1 -> 2 (terminated); env 1: 0 -> 1 -> 2 (truncated); then both start again from 10
    store.add(frames(0), action, [1.0, 2.0], frames(1), [False, False], truncated=[False, False])
    store.add(frames(1), action, [3.0, 4.0], frames(2), [True, False], truncated=[False, True])
    store.add(frames(10), action, [5.0, 6.0], frames(11), [False, False], truncated=[False, False])
    replay = store.replay
    rows = [replay.block * stream + np.arange(5) for stream in range(2)]
    for stream, where in enumerate(rows):
        np.testing.assert_array_equal(replay.obs[where, 0, 0, 0].numpy(), [0, 1, 2, 10, 11])
        np.testing.assert_array_equal(replay.is_first[where].numpy(), [True, False, False, True, False])
        np.testing.assert_array_equal(
            replay.prev_action[where, 0].numpy(), [0, action[stream, 0], action[stream, 0], 0, action[stream, 0]]
        )
    np.testing.assert_array_equal(replay.reward[rows[0]].numpy(), [0, 1, 3, 0, 5])
    np.testing.assert_array_equal(replay.is_terminal[rows[0]].numpy(), [False, False, True, False, False])
    np.testing.assert_array_equal(replay.is_terminal[rows[1]].numpy(), [False] * 5)  # truncation is not terminal
    batch = store.sample(32)
    first = batch.obs[:, 0, 0, 0, 0]
    assert batch.obs.shape == (32, 3, 4, 4, 3) and set(first.tolist()) == {0}  # windows never cross episodes


def test_a_resumed_store_starts_new_episodes():
    store = TransitionSequences.create(64, (4, 4, 3), 1, 2, 2, "cpu", torch.uint8)
    action = np.zeros((2, 1), dtype=np.float32)
    store.add(frames(0), action, [0.0, 0.0], frames(1), [False, False])
    restored = store  # its streams' episodes are open: a resumed run must not continue them
    restored.load_state_dict(store.state_dict())
    restored.add(frames(20), action, [0.0, 0.0], frames(21), [False, False])  # the trainer reset its envs
    assert restored.replay.is_first[[2, restored.replay.block + 2]].all()
    assert restored.replay.obs[2, 0, 0, 0] == 20


def test_the_repo_agent_is_built_from_its_config_and_refuses_unknown_keys():
    import gymnasium as gym

    obs = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    act = gym.spaces.Box(-1, 1, (2,), np.float32)
    cfg = {"name": "repo", "deter_dim": 16, "stoch_dim": 4, "hidden_dim": 16, "cnn_depth": 4, "embed_dim": 64}
    agent = make_agent(cfg, obs, act, torch.device("cpu"))
    assert agent.cfg.deter_dim == 16
    with pytest.raises(ConfigError, match="does not take hidden_dims"):
        make_agent({**cfg, "hidden_dims": [8]}, obs, act, torch.device("cpu"))
    with pytest.raises(ConfigError, match="objective"):
        make_agent({**cfg, "objective": "dreamerv3"}, obs, act, torch.device("cpu"))


def test_a_tiny_repo_run_trains_evaluates_on_the_test_split_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    results = train_in_process(repo_args(run_dir))
    assert results["steps"] == 60 and results["updates"] == 1  # 20 steps after the 40 random ones at 0.05
    report = json.loads((run_dir / "repo.json").read_text())
    assert report["objective"] == "repo" and report["test_distractors"]["episodes"] == 1
    assert report["train_distractors"]["step"] == 60
    assert list((run_dir / "test_eval").glob("*.mp4"))
    # a longer budget continues from the checkpoint, replay included
    more = train_in_process(repo_args(run_dir, "trainer.total_steps=100", "resume=true"))
    assert more["steps"] == 100 and more["updates"] == 3


def test_dreamer_is_the_same_run_with_another_objective(tmp_path):
    run_dir = tmp_path / "dreamer"
    train_in_process(repo_args(run_dir, "agent.objective=dreamer", "repo.test_split=false"))
    report = json.loads((run_dir / "repo.json").read_text())
    assert report["objective"] == "dreamer" and report["test_distractors"] is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("env.obs_mode=state", "64x64 pixels"),
        ("agent=sac", "trains agent=repo"),
        ("repo.seq_len=1", "seq_len"),
        ("trainer.replay_size=5", "holds no window"),
        ("+repo.horizon=3", "horizon"),
    ],
)
def test_bad_settings_are_refused(tmp_path, override, message):
    args = repo_args(tmp_path / "bad", override)
    if override.startswith("agent="):  # another agent has none of RePo's keys
        args = [arg for arg in args if arg not in TINY_AGENT]
    with pytest.raises(ConfigError, match=message):
        train_in_process(args)
    assert not (tmp_path / "bad" / "checkpoints").exists()


class _PixelStub:
    """A 3-step env of random 64x64 frames (evaluation needs reset, step, render)."""

    metadata: dict = {}

    def __init__(self):
        self.rng, self.t = np.random.default_rng(0), 0

    def frame(self) -> np.ndarray:
        return self.rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)

    def reset(self, seed=None):
        self.t = 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        return self.frame(), 0.0, False, self.t >= 3, {"success": False}


def test_an_evaluation_leaves_the_training_envs_recurrent_state_as_it_was(tmp_path):
    """Evaluation resets the agent for its one env; the training envs' (h, z, a) must come back (with 2 training
    envs, the next act would otherwise fail or act from a wrong state)."""
    from embodied_rl.agents.repo import RePo, RePoConfig
    from embodied_rl.logging import RunLogger
    from embodied_rl.trainers.evaluation import evaluate_and_log

    cfg = RePoConfig(cnn_depth=4, embed_dim=64, deter_dim=16, stoch_dim=4, hidden_dim=16)
    agent = RePo((64, 64, 3), 2, cfg, device="cpu")
    agent.reset(np.ones(2, dtype=bool))
    agent.act(np.zeros((2, 64, 64, 3), np.uint8))
    before = [part.clone() for part in agent.acting_state]
    logger = RunLogger(tmp_path, tensorboard=False, console=False)
    evaluate_and_log(agent, _PixelStub(), episodes=1, seed=0, step=0, logger=logger)
    assert all(torch.equal(a, b) for a, b in zip(agent.acting_state, before))
    agent.act(np.zeros((2, 64, 64, 3), np.uint8))  # the training envs act on

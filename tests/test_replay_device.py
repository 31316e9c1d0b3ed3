"""trainer.replay_device: the online trainer moves sampled batches to the agent's device.

The CPU-only check puts the agent on torch's "meta" device (tensors without data): a batch left on the
buffer's CPU would fail the fake agent's update.
"""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from embodied_rl.data import ReplayBuffer
from embodied_rl.data.transitions import Transitions
from embodied_rl.trainers import OnlineTrainer, OnlineTrainerConfig


class TwoKeyEnv(gym.Env):
    """Dict observations (state and pixels), four-step episodes."""

    observation_space = gym.spaces.Dict(
        {"state": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "pixels": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)}
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 0.0, False, self.t == 4, {}


class MetaAgent:
    """Checks that every batch it updates on lives on its device."""

    device = torch.device("meta")

    def __init__(self):
        self.updates = 0

    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        return np.zeros((len(obs["state"]), 1), np.float32)

    def update(self, batch: Transitions) -> dict[str, torch.Tensor]:
        tensors = [batch.action, batch.reward, batch.terminated, *batch.obs.values(), *batch.next_obs.values()]
        assert all(t.device == self.device for t in tensors), [t.device for t in tensors]
        self.updates += 1
        return {}


def test_online_trainer_moves_batches_from_a_cpu_buffer_to_the_agents_device(tmp_path):
    envs = gym.vector.SyncVectorEnv([TwoKeyEnv] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    buffer = ReplayBuffer.from_spaces(100, envs.single_observation_space, envs.single_action_space, device="cpu")
    agent = MetaAgent()
    logger = SimpleNamespace(log=lambda *args, **kwargs: None, flush=lambda: None)
    cfg = OnlineTrainerConfig(
        total_steps=20, seed_steps=6, batch_size=4, eval_every=0, checkpoint_every=0, log_every=0, progress=False
    )
    trainer = OnlineTrainer(cfg, envs, None, agent, buffer, logger, tmp_path)
    trainer.evaluate, trainer.save = (lambda: {"step": trainer.step}), (lambda: None)
    trainer.train()
    assert agent.updates == 16 and buffer.obs["pixels"].device.type == "cpu"


def test_transitions_to_moves_dict_observations():
    batch = Transitions(
        obs={"state": torch.zeros(3, 2)},
        action=torch.zeros(3, 1),
        reward=torch.zeros(3),
        next_obs={"state": torch.ones(3, 2)},
        terminated=torch.zeros(3),
    )
    moved = batch.to("meta")
    assert moved.obs["state"].device.type == moved.next_obs["state"].device.type == moved.reward.device.type == "meta"
    assert moved.episode_id is None and batch.obs["state"].device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_indices_drawn_on_the_gpu_select_the_right_rows_of_host_data():
    """A non-blocking copy of the indices to the host could be read before it lands (`indices_to`)."""
    rows = 200_000
    data = Transitions(
        obs=torch.arange(rows, dtype=torch.float32)[:, None],
        action=torch.zeros(rows, 1),
        reward=torch.arange(rows, dtype=torch.float32),
        next_obs=torch.zeros(rows, 1),
        terminated=torch.zeros(rows),
    )
    for seed in range(20):
        expected = torch.randint(rows, (4096,), generator=torch.Generator("cuda").manual_seed(seed), device="cuda")
        batch = data.sample(4096, generator=torch.Generator("cuda").manual_seed(seed))
        assert torch.equal(batch.reward, expected.cpu().float())

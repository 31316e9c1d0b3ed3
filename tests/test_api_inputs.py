"""Mistakes a researcher makes with the Python API are one clear error at the boundary, never a silent wrong
result: batches of the wrong size, dtype or kind, observations of the wrong shape, float pixels, replay rows
of the wrong layout, NaN data for the normaliser, a normaliser never fitted."""

import copy
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from embodied_rl.agents import BC, IQL, SAC, TD3BC
from embodied_rl.data import DatasetError, Transitions
from embodied_rl.data.replay import ReplayBuffer
from embodied_rl.trainers import OfflineTrainer, OfflineTrainerConfig

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
PIXELS = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
SMALL = {"hidden_dims": (8,)}
B = 8


def batch(**changes) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    fields = {
        "obs": torch.randn(B, 5, generator=g),
        "action": torch.rand(B, 2, generator=g) * 2 - 1,
        "reward": torch.randn(B, generator=g),
        "next_obs": torch.randn(B, 5, generator=g),
        "terminated": torch.zeros(B),
    }
    return {**fields, **changes}


def agents():
    raw = {**SMALL, "normalize_obs": False}
    return [SAC(OBS, ACT, **SMALL), IQL(OBS, ACT, **raw), TD3BC(OBS, ACT, **raw)]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"reward": torch.zeros(1)}, "different batch sizes"),  # would broadcast over the batch
        ({"terminated": torch.zeros(())}, "different batch sizes"),
        ({"reward": torch.zeros(B, 2)}, "different batch sizes"),
        ({"action": torch.zeros(B, 3)}, "batch['action'] has shape (8, 3), not (B, 2)"),
        ({"action": torch.zeros(B, 2, dtype=torch.float64)}, "batch['action'] is torch.float64"),
        ({"obs": np.zeros((B, 5), np.float32)}, "batch['obs'] is a ndarray"),
        ({"terminated": torch.zeros(B, dtype=torch.int64)}, "batch['terminated'] is torch.int64"),
    ],
)
def test_update_refuses_batches_that_would_train_on_something_else(changes, message):
    for agent in agents():
        with pytest.raises((ValueError, TypeError), match=re.escape(message)):
            agent.update(batch(**changes))


def test_update_takes_column_rewards_bool_terminations_and_names_a_missing_field():
    for agent in agents():
        agent.update(batch(reward=torch.zeros(B, 1), terminated=torch.zeros(B, 1, dtype=torch.bool)))
        incomplete = batch()
        del incomplete["terminated"]
        with pytest.raises(KeyError, match="the batch has no terminated"):
            agent.update(incomplete)


@pytest.mark.parametrize("agent_class", [SAC, IQL, TD3BC, BC])
def test_agents_refuse_a_device_torch_cannot_use_with_the_reason(agent_class):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        agent_class(OBS, ACT, **SMALL, device="tpu")
    count = torch.cuda.device_count()
    reason = "CUDA is not available" if count == 0 else f"torch sees {count} GPU"
    with pytest.raises(ValueError, match=reason):
        agent_class(OBS, ACT, **SMALL, device="cuda" if count == 0 else f"cuda:{count}")


def test_bc_refuses_a_flat_action_for_a_one_dimensional_action_space():
    one_d = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    agent = BC(OBS, one_d, **SMALL)
    with pytest.raises(ValueError, match=re.escape("not (B, 1)")):  # (B,) against (B, 1) was a (B, B) loss
        agent.update({"obs": torch.randn(B, 5), "action": torch.zeros(B)})


def test_act_refuses_observations_of_the_wrong_shape_and_float_pixels():
    agent = SAC(OBS, ACT, **SMALL)
    with pytest.raises(ValueError, match=re.escape("observation of shape (4,) for a space of shape (5,)")):
        agent.act(np.zeros(4, np.float32))
    pixel_agent = SAC(PIXELS, ACT, **SMALL, encoder_feature_dim=8, encoder_num_filters=4, encoder_num_layers=1)
    image = np.zeros((16, 16, 3), np.uint8)
    assert pixel_agent.act(image).shape == (2,)
    with pytest.raises(TypeError, match="pixel observations must be uint8"):  # /255 would be applied twice
        pixel_agent.act(image.astype(np.float32) / 255)


def test_replay_buffer_refuses_rows_it_would_silently_reshape_or_cast():
    buffer = ReplayBuffer.from_spaces(10, PIXELS, ACT)
    image, action = np.zeros((16, 16, 3), np.uint8), np.zeros(2, np.float32)
    buffer.add(image, action, 0.0, image, False)
    buffer.add(image[None], action[None], np.zeros((1, 1)), image[None], np.zeros(1, bool))
    channels_first = np.zeros((3, 16, 16), np.uint8)
    with pytest.raises(ValueError, match=re.escape("replay field 'obs' of shape (3, 16, 16)")):
        buffer.add(channels_first, action, 0.0, channels_first, False)
    with pytest.raises(TypeError, match="replay field 'obs' is float32"):
        buffer.add(image.astype(np.float32), action, 0.0, image, False)
    assert len(buffer) == 2


def test_normaliser_refuses_nan_data_and_offline_training_fits_it():
    agent = IQL(OBS, ACT, **SMALL)
    data = torch.randn(50, 5) * 3 + 7
    with pytest.raises(DatasetError, match="NaN or inf"):
        agent.fit_normalizer(torch.cat([data, torch.full((1, 5), float("nan"))]))
    for unfitted in (agent, BC(OBS, ACT, **SMALL)):
        with pytest.warns(UserWarning, match="fit_normalizer"):
            unfitted.update(batch())
        with warnings.catch_warnings():  # once
            warnings.simplefilter("error")
            unfitted.update(batch())
    fresh = IQL(OBS, ACT, **SMALL)
    OfflineTrainer(OfflineTrainerConfig(total_updates=1), Transitions(**batch(obs=data[:B])), None, fresh, None, ".")
    assert fresh.normalizer_fitted and torch.allclose(fresh.normalizer.mean, data[:B].mean(0))
    restored = IQL(OBS, ACT, **SMALL)
    restored.load_state_dict(fresh.state_dict())  # a checkpoint holds its statistics: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.update(batch())


def test_state_dict_is_live_like_torch_and_a_deep_copy_is_a_snapshot():
    for agent in [SAC(OBS, ACT, **SMALL), IQL(OBS, ACT, **SMALL)]:
        agent.fit_normalizer(torch.randn(20, 5)) if hasattr(agent, "fit_normalizer") else None
        snapshot = copy.deepcopy(agent.state_dict())
        live = agent.state_dict()
        for _ in range(3):
            agent.update(batch())
        agent.load_state_dict(snapshot)
        assert all(torch.equal(a, b) for a, b in zip(agent.state_dict()["actor"].values(), snapshot["actor"].values()))
        assert agent.num_updates == 0 and live["num_updates"] == 0


def test_another_agents_state_is_refused_before_anything_is_loaded():
    bc, td3bc = BC(OBS, ACT, **SMALL), TD3BC(OBS, ACT, **SMALL)
    td3bc.fit_normalizer(torch.randn(20, 5) + 7)
    before = copy.deepcopy(bc.state_dict())
    with pytest.raises(ValueError, match="a state_dict for BC needs"):
        bc.load_state_dict(td3bc.state_dict())
    assert torch.equal(bc.state_dict()["normalizer"]["mean"], before["normalizer"]["mean"])  # nothing loaded
    with pytest.raises(ValueError, match="a state_dict for SAC needs"):
        SAC(OBS, ACT, **SMALL).load_state_dict(IQL(OBS, ACT, **SMALL).state_dict())

"""Range checks of settings: every agent, trainer and IDM setting out of range is one ValueError naming it."""

import re

import gymnasium as gym
import numpy as np
import pytest

from embodied_rl.agents import BC, IQL, SAC, TD3BC
from embodied_rl.labelling.inverse_dynamics import IDMConfig
from embodied_rl.trainers import OfflineTrainerConfig
from embodied_rl.validation import check_ranges, in_range

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
TINY = {"hidden_dims": (8,)}


@pytest.mark.parametrize(
    "value, spec, inside",
    [
        (0, "> 0", False),
        (1e-9, "> 0", True),
        (0, ">= 0", True),
        (-1, ">= -2", True),
        (1, "[0, 1]", True),
        (1, "[0, 1)", False),
        (0, "(0, 1]", False),
        (0.5, "(0, 1)", True),
        (None, "None or >= 1", True),
        (0, "None or >= 1", False),
        (None, "> 0", False),
        (True, "> 0", False),  # a bool is not a number of steps
        ("3", "> 0", False),
        (float("nan"), ">= 0", False),
    ],
)
def test_in_range(value, spec, inside):
    assert in_range(value, spec) is inside


def test_unknown_range_is_an_error():
    with pytest.raises(ValueError, match="unknown range"):
        in_range(1, "positive")


def test_check_ranges_names_every_bad_key_once():
    with pytest.raises(ValueError) as error:
        check_ranges("settings", {"a": 0, "b": 2, "c": -1}, {"a": "> 0", "b": "[0, 1]", "c": "None or >= 0"}, "x.")
    assert str(error.value) == (
        "invalid settings: x.a=0 (must be > 0), x.b=2 (must be in [0, 1]), x.c=-1 (must be None or >= 0)"
    )
    check_ranges("settings", {"a": 1, "b": 0, "c": None}, {"a": "> 0", "b": "[0, 1]", "c": "None or >= 0"})


@pytest.mark.parametrize(
    "make, setting",
    [
        (SAC, "num_critics=0"),
        (SAC, "max_grad_norm=0"),
        (SAC, "encoder_num_layers=0"),
        (SAC, "augment_pad=-1"),
        (IQL, "expectile=1"),
        (IQL, "beta=-1"),
        (IQL, "actor_lr_schedule_steps=0"),
        (TD3BC, "policy_noise=-0.1"),
        (TD3BC, "policy_update_every=0"),
        (BC, "lr=0"),
    ],
)
def test_agents_refuse_settings_out_of_range(make, setting):
    key, value = setting.split("=")
    with pytest.raises(ValueError, match=re.escape(f"invalid hyperparameters: {setting} (must be")):
        make(OBS, ACT, **TINY, **{key: float(value) if "." in value else int(value)})


def test_optional_settings_may_be_none():
    SAC(OBS, ACT, **TINY, max_grad_norm=None)
    IQL(OBS, ACT, **TINY, actor_lr_schedule_steps=None)


def test_idm_and_trainer_settings_name_their_config_group():
    with pytest.raises(ValueError, match=re.escape("idm.lr=0 (must be > 0)")):
        IDMConfig(lr=0)
    with pytest.raises(ValueError, match=re.escape("idm.val_fraction=1.0 (must be in [0, 1))")):
        IDMConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match=re.escape("trainer.total_updates=0 (must be > 0)")):
        OfflineTrainerConfig(total_updates=0)


def test_agent_configs_of_earlier_runs_with_whole_number_floats_still_build():
    # IQL's actor_lr_schedule_steps interpolates trainer.total_updates, stored as 1000000.0 when given as 1e6
    from embodied_rl.trainers.builders import make_agent

    agent = make_agent({"name": "iql", "hidden_dims": [8.0], "actor_lr_schedule_steps": 1e6}, OBS, ACT, "cpu")
    assert agent.actor_lr_schedule_steps == 1_000_000 and isinstance(agent.actor_lr_schedule_steps, int)
    with pytest.raises(ValueError, match=re.escape("agent.actor_lr_schedule_steps=2.5 (must be an integer or None)")):
        make_agent({"name": "iql", "actor_lr_schedule_steps": 2.5}, OBS, ACT, "cpu")

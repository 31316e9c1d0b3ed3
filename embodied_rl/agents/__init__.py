"""Learners. Each agent is usable without Hydra: `SAC(observation_space, action_space, **hparams)`, then
`act(obs, deterministic)`, `update(batch) -> dict of detached tensors`, `state_dict()` / `load_state_dict()`
and `to(device)`: the agent protocol of `embodied_rl.agents.protocol` (`Agent`), whose optional hooks are
`prepare(data)` and `reset(done_mask)`. The offline learners (IQL, TD3BC, BC) take state observations; their
`prepare(data)` (called by the offline trainer) fits the observation normaliser, as `fit_normalizer(dataset_obs)`
does by hand."""

from embodied_rl.agents.bc import BC
from embodied_rl.agents.iql import IQL
from embodied_rl.agents.protocol import Agent
from embodied_rl.agents.repo import RePo, RePoConfig
from embodied_rl.agents.sac import SAC
from embodied_rl.agents.td3bc import TD3BC

__all__ = ["BC", "IQL", "SAC", "TD3BC", "Agent", "RePo", "RePoConfig"]

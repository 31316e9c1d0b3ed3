"""Build the pieces of a run from its (Hydra) config: device, agent, seeds.

Shared by scripts/train.py and scripts/evaluate.py so a checkpoint is always rebuilt exactly as it
was trained. Agents are registered by name; each later method adds its learner here.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from embodied_rl import devices
from embodied_rl.validation import check_types

# config name -> "module:Class"; imported lazily so a missing optional piece never breaks the others.
AGENTS = {
    "sac": "embodied_rl.agents.sac:SAC",
    "iql": "embodied_rl.agents.iql:IQL",
    "td3bc": "embodied_rl.agents.td3bc:TD3BC",
    "bc": "embodied_rl.agents.bc:BC",
    "repo": "embodied_rl.agents.repo:RePo",
}


class ConfigError(ValueError):
    """A run's config cannot work: a bad option, a missing GPU, a resume with a changed config."""


def resolve_device(device: str = "auto", option: str = "device") -> torch.device:
    """`embodied_rl.devices.resolve_device`, its refusal a ConfigError (naming `option`)."""
    try:
        return devices.resolve_device(device, option)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_agent(agent_cfg: Mapping[str, Any], observation_space, action_space, device: torch.device):
    """Instantiate the agent named `agent_cfg["name"]` with the other keys as constructor arguments, or, for an
    agent class with a `settings_class` (a dataclass of its hyperparameters), as that dataclass:
    `agent_class(observation_space, action_space, settings, device=...)`."""
    cfg = dict(agent_cfg)
    name = cfg.pop("name")
    if name not in AGENTS:
        raise ConfigError(f"unknown agent '{name}'; known agents: {', '.join(sorted(AGENTS))}")
    module_name, class_name = AGENTS[name].split(":")
    agent_class = getattr(importlib.import_module(module_name), class_name)
    settings_class = getattr(agent_class, "settings_class", None)
    if settings_class is not None:
        unknown = sorted(set(cfg) - {field.name for field in dataclasses.fields(settings_class)})
        if unknown:
            raise ConfigError(
                f"agent '{name}' does not take {', '.join(unknown)} (an experiment meant for another "
                f"agent?); its options are in configs/agent/{name}.yaml"
            )
        try:
            settings = settings_class.from_mapping(cfg)
        except ValueError as err:
            raise ConfigError(f"agent '{name}': {err}") from None
        return agent_class(observation_space, action_space, settings, device=str(device))
    accepted = inspect.signature(agent_class.__init__).parameters
    unknown = sorted(key for key in cfg if key not in accepted)
    if unknown:
        raise ConfigError(
            f"agent '{name}' does not take {', '.join(unknown)} (an experiment meant for another "
            f"agent?); its options are in configs/agent/{name}.yaml"
        )
    annotations = {key: parameter.annotation for key, parameter in accepted.items()}
    cfg = check_types("agent settings", cfg, annotations, prefix="agent.")  # 1e6 (read as 1000000.0) -> 1000000
    return agent_class(observation_space, action_space, device=str(device), **cfg)

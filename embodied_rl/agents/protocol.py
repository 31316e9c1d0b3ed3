"""The agent protocol: what trainers, evaluation and pipelines may call on any learner.

Every agent has `act`, `update`, `state_dict` / `load_state_dict` and `device`. Two hooks are optional:
`prepare(data)` (called once with the training data before the first update, e.g. to fit an observation
normaliser) and `reset(done_mask)` (agents with recurrent state, e.g. a world model's policy: called at episode
starts by online training and by evaluation). `prepare_agent` and `reset_agent` call a hook only where the agent
has it, so simple agents need neither. Such an agent also exposes its per-env state as `acting_state` (get and
set), so that an evaluation in the middle of training (`acting_state_kept`) leaves the training envs' state as it
was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Agent(Protocol):
    device: torch.device

    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Action(s) for one observation or a batch (numpy in, numpy out, within the action space)."""

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One gradient update on a batch; detached tensors, turned into floats only when logged."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimisers, counters."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`."""


def prepare_agent(agent: Any, data: Any) -> None:
    """`agent.prepare(data)` when the agent has that hook (offline learners fit their normaliser there)."""
    prepare = getattr(agent, "prepare", None)
    if prepare is not None:
        prepare(data)


def reset_agent(agent: Any, done_mask: np.ndarray) -> None:
    """`agent.reset(done_mask)` when the agent carries recurrent state: `done_mask` (N,) bool marks the envs
    whose episode starts now (all True at the first step)."""
    reset = getattr(agent, "reset", None)
    if reset is not None:
        reset(np.asarray(done_mask, dtype=bool))


@contextmanager
def acting_state_kept(agent: Any) -> Iterator[None]:
    """Give `agent.acting_state` (the per-env recurrent state an agent carries between `act` calls) back after the
    block, e.g. around an evaluation that resets and uses it for its own env; nothing for agents without one."""
    if not hasattr(agent, "acting_state"):
        yield
        return
    saved = agent.acting_state
    try:
        yield
    finally:
        agent.acting_state = saved

"""Stop a run whose agent update went non-finite (NaN or inf) before it evaluates or checkpoints broken networks.

Once a loss is NaN the parameters are NaN from the next step on: the agent acts NaN, and every later
checkpoint would hold the broken networks. The trainers call `check_finite` on the latest update's metrics at
log, evaluation and checkpoint points, and `check_finite_state` on the agent state a checkpoint is about to
save (an update can break the parameters while its own losses are still finite), so the update path gains no
host sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils import _pytree as pytree

ADVICE = (
    "The run stops here; its last checkpoint (written before this) is untouched. Start it again with overwrite=true "
    "and lower learning rates, a smaller reward scale, or gradient clipping where the agent has it "
    "(agent.max_grad_norm for SAC)"
)


class TrainingDiverged(RuntimeError):
    """An agent update returned a non-finite metric; the run stops, its earlier checkpoints stay as they were."""


def _is_finite(value: Any) -> bool:
    return bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float32)).all())


def check_finite(metrics: Mapping[str, Any], step: int, unit: str = "step") -> None:
    """Raise `TrainingDiverged` naming the non-finite entries of `metrics` (an update's dict of tensors)."""
    bad = [key for key, value in metrics.items() if not _is_finite(value)]
    if bad:
        values = ", ".join(f"{key}={torch.as_tensor(metrics[key]).float().mean().item()}" for key in bad)
        raise TrainingDiverged(f"training diverged at {unit} {step}: the latest update returned {values}. {ADVICE}")


def check_finite_state(state: Any, step: int, unit: str = "step") -> None:
    """Raise `TrainingDiverged` if any floating-point tensor in `state` (an agent's nested state dict:
    parameters, optimiser moments, ...) holds a NaN or inf. One host sync."""
    tensors = [leaf for leaf in pytree.tree_leaves(state) if torch.is_tensor(leaf) and leaf.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        raise TrainingDiverged(
            f"training diverged at {unit} {step}: the agent's parameters or optimiser state hold NaN or inf. {ADVICE}"
        )

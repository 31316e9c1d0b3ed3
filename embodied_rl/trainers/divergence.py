"""Stop a run whose agent update went non-finite (NaN or inf) before it evaluates or checkpoints broken networks.

Once a loss is NaN the parameters are NaN from the next step on: the agent acts NaN, and every later
checkpoint would hold the broken networks. The trainers call `check_finite` only where they read the update's
metrics on the host anyway (logging, evaluation, checkpoints), so the update path gains no host sync.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class TrainingDiverged(RuntimeError):
    """An agent update returned a non-finite metric; the run stops, its earlier checkpoints stay as they were."""


def check_finite(metrics: Mapping[str, Any], step: int, unit: str = "step") -> None:
    """Raise `TrainingDiverged` naming the non-finite entries of `metrics` (an update's dict of scalar tensors)."""
    bad = [key for key, value in metrics.items() if not math.isfinite(float(value))]
    if bad:
        values = ", ".join(f"{key}={float(metrics[key])}" for key in bad)
        raise TrainingDiverged(
            f"training diverged at {unit} {step}: the latest update returned {values}. The run stops here; its "
            "last checkpoint (written before this) is untouched. Try lower learning rates, a smaller reward "
            "scale, or gradient clipping where the agent has it (agent.max_grad_norm for SAC)"
        )

"""Labels for unlabelled data: the inverse dynamics model of SS-ORL (proxy actions for action-free trajectories) and
the scripted preference teacher with B-Pref's noise models."""

from embodied_rl.labelling.inverse_dynamics import (
    IDMConfig,
    IDMTrainReport,
    InverseDynamicsModel,
    evaluate_inverse_dynamics,
    split_validation,
    state_windows,
    train_inverse_dynamics,
    window_indices,
    window_offsets,
)
from embodied_rl.labelling.preference_teacher import ScriptedTeacher

__all__ = [
    "IDMConfig",
    "IDMTrainReport",
    "InverseDynamicsModel",
    "ScriptedTeacher",
    "evaluate_inverse_dynamics",
    "split_validation",
    "state_windows",
    "train_inverse_dynamics",
    "window_indices",
    "window_offsets",
]

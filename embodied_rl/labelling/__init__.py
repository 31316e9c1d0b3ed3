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
from embodied_rl.labelling.transfer import (
    distance_matrix,
    gw_coupling,
    segment_features,
    transfer_accuracy,
    transfer_labels,
)

__all__ = [
    "IDMConfig",
    "IDMTrainReport",
    "InverseDynamicsModel",
    "ScriptedTeacher",
    "distance_matrix",
    "evaluate_inverse_dynamics",
    "gw_coupling",
    "segment_features",
    "split_validation",
    "state_windows",
    "train_inverse_dynamics",
    "transfer_accuracy",
    "transfer_labels",
    "window_indices",
    "window_offsets",
]

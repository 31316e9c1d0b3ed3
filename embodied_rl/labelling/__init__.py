"""Labels for unlabelled data: the inverse dynamics model of SS-ORL (proxy actions for action-free trajectories),
the scripted preference teacher with B-Pref's noise models, and preference labels for frame pairs from a
vision-language model (RL-VLM-F)."""

from embodied_rl.labelling.frame_pairs import (
    check_frames,
    frame_pair_images,
    frame_pair_rewards,
    sample_frame_pairs,
    scripted_frame_labels,
)
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
from embodied_rl.labelling.stand_in import StandInVLM
from embodied_rl.labelling.transfer import (
    distance_matrix,
    gw_coupling,
    segment_features,
    transfer_accuracy,
    transfer_labels,
)
from embodied_rl.labelling.vlm_teacher import (
    ChatAPI,
    LabellingSettings,
    VLMPrompts,
    VLMTeacher,
    agreement,
    flip_fraction,
    load_settings,
    parse_label,
    run_labelling,
)

__all__ = [
    "ChatAPI",
    "IDMConfig",
    "IDMTrainReport",
    "InverseDynamicsModel",
    "LabellingSettings",
    "ScriptedTeacher",
    "StandInVLM",
    "VLMPrompts",
    "VLMTeacher",
    "agreement",
    "check_frames",
    "distance_matrix",
    "evaluate_inverse_dynamics",
    "flip_fraction",
    "frame_pair_images",
    "frame_pair_rewards",
    "gw_coupling",
    "load_settings",
    "parse_label",
    "run_labelling",
    "sample_frame_pairs",
    "scripted_frame_labels",
    "segment_features",
    "split_validation",
    "state_windows",
    "train_inverse_dynamics",
    "transfer_accuracy",
    "transfer_labels",
    "window_indices",
    "window_offsets",
]

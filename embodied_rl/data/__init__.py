"""Trajectory datasets (local Minari I/O), flat transitions, segments, preference pairs, sequences, replay and
normalisation.

Quick use:
    trajectories = load_trajectories("embodied_rl/metaworld-drawer-open-v3/expert-v0", env=env)
    data = transitions_from_trajectories(trajectories, device="cuda")
    batch = data.sample(256, generator)
"""

from embodied_rl.data.collection import collect_dataset, iterate_rollouts, reference_returns, rollout
from embodied_rl.data.errors import DatasetError
from embodied_rl.data.minari_io import (
    check_dataset_matches_env,
    dataset_id_for,
    load_trajectories,
    open_dataset,
    write_dataset,
)
from embodied_rl.data.normalization import ObservationNormalizer
from embodied_rl.data.policies import NoisyPolicy, RandomPolicy
from embodied_rl.data.preferences import (
    PreferencePairs,
    import_preference_labels,
    pair_segment_arrays,
    sample_segment_pairs,
    segment_arrays,
)
from embodied_rl.data.replay import ReplayBuffer
from embodied_rl.data.segments import Segments, SegmentSampler
from embodied_rl.data.sequences import SequenceReplay, Sequences
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.data.transitions import Transitions, transitions_from_trajectories

__all__ = [
    "DatasetError",
    "NoisyPolicy",
    "ObservationNormalizer",
    "PreferencePairs",
    "RandomPolicy",
    "ReplayBuffer",
    "SegmentSampler",
    "Segments",
    "SequenceReplay",
    "Sequences",
    "Trajectory",
    "Transitions",
    "check_dataset_matches_env",
    "collect_dataset",
    "dataset_id_for",
    "import_preference_labels",
    "iterate_rollouts",
    "load_trajectories",
    "open_dataset",
    "pair_segment_arrays",
    "reference_returns",
    "rollout",
    "sample_segment_pairs",
    "segment_arrays",
    "transitions_from_trajectories",
    "write_dataset",
]

"""Reward functions: preference reward models (Bradley-Terry MLP ensemble, Preference Transformer, PEARL's robust
reward learning), trained by the shared fit loop, and relabelling of datasets with them."""

from embodied_rl.rewards.preference import (
    MLPRewardEnsemble,
    PreferenceRewardModel,
    PreferenceTransformer,
    RewardModelConfig,
    RewardOutput,
    RewardTrainReport,
    bradley_terry_loss,
    build_reward_model,
    evaluate_reward_model,
    load_reward_model,
    preference_loss,
    relabel_trajectories,
    save_reward_model,
    train_reward_model,
    variance_regularizer,
)

__all__ = [
    "MLPRewardEnsemble",
    "PreferenceRewardModel",
    "PreferenceTransformer",
    "RewardModelConfig",
    "RewardOutput",
    "RewardTrainReport",
    "bradley_terry_loss",
    "build_reward_model",
    "evaluate_reward_model",
    "load_reward_model",
    "preference_loss",
    "relabel_trajectories",
    "save_reward_model",
    "train_reward_model",
    "variance_regularizer",
]

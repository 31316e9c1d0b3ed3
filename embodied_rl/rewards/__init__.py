"""Reward functions: preference reward models (Bradley-Terry MLP ensemble, Preference Transformer, PEARL's robust
reward learning, the image reward model of RL-VLM-F), trained by the shared fit loop, and relabelling of datasets
with them."""

from embodied_rl.rewards import image_reward as _image_reward
from embodied_rl.rewards import preference as _preference
from embodied_rl.rewards.image_reward import *  # noqa: F403  (its __all__: model, settings, training, relabelling)
from embodied_rl.rewards.preference import *  # noqa: F403  (its __all__: models, settings, training, relabelling)

__all__ = [*_preference.__all__, *_image_reward.__all__]

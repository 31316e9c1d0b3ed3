"""Reward functions: preference reward models (Bradley-Terry MLP ensemble, Preference Transformer, PEARL's robust
reward learning), trained by the shared fit loop, and relabelling of datasets with them."""

from embodied_rl.rewards.preference import *  # noqa: F403  (its __all__: models, settings, training, relabelling)
from embodied_rl.rewards.preference import __all__  # noqa: F401

"""embodied_rl: robot-learning methods on one shared core.

Subpackages: ``envs`` (environment wrappers), ``data`` (datasets and replay), ``nn`` (network blocks),
``agents`` (learners), ``trainers`` (training loops), ``logging`` (console, CSV, TensorBoard, video).
"""

__version__ = "0.1.0"

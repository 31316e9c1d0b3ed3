"""Shared pytest setup: the headless MuJoCo backend chosen before anything imports mujoco (a MUJOCO_GL you set
wins, else EGL with an NVIDIA GPU, else OSMesa: `embodied_rl.envs.rendering.choose_backend`)."""

import embodied_rl.envs  # noqa: F401  (importing it sets MUJOCO_GL)

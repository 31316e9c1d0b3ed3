"""embodied_rl.envs: Meta-World v3, gymnasium MuJoCo locomotion and the DeepMind Control Suite behind one
`make_env` (numpy, no torch).

    from embodied_rl.envs import make_env
    env = make_env(task="metaworld/drawer-open-v3", obs_mode="pixels", frame_stack=3)

Importing this package picks the headless OpenGL backend (``MUJOCO_GL``) before mujoco is imported, and
registers every task with gymnasium (e.g. ``embodied_rl/metaworld-drawer-open-v3``).
"""

from .rendering import RenderingBackendError, configure_rendering_backend

configure_rendering_backend()  # must run before anything imports mujoco

from .config import EnvConfig, to_env_config  # noqa: E402
from .factory import make_env, make_vector_env, subenv_seeds  # noqa: E402
from .registration import env_id_for, register_envs  # noqa: E402
from .scripted import scripted_policy  # noqa: E402
from .tasks import DMC_TASKS, METAWORLD_TASKS, MUJOCO_TASKS, UnknownTaskError  # noqa: E402
from .wrappers import RewardFunction  # noqa: E402

register_envs()

__all__ = [
    "DMC_TASKS",
    "METAWORLD_TASKS",
    "MUJOCO_TASKS",
    "EnvConfig",
    "RenderingBackendError",
    "RewardFunction",
    "UnknownTaskError",
    "configure_rendering_backend",
    "env_id_for",
    "make_env",
    "make_vector_env",
    "register_envs",
    "scripted_policy",
    "subenv_seeds",
    "to_env_config",
]

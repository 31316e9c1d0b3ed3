"""Headless MuJoCo rendering: pick the OpenGL backend before mujoco is imported, open renderers, fix cameras.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so `configure_rendering_backend` runs on
import of ``embodied_rl.envs``, before anything of ours imports mujoco. A user-set ``MUJOCO_GL`` always wins
(an empty one counts as unset); otherwise Linux gets ``egl`` when an NVIDIA GPU is visible and ``osmesa``
(CPU) else. Nothing here fails at import: a machine without any OpenGL library can still run state-only
envs, and the first render raises one `RenderingBackendError` saying what to install.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np

HEADLESS_BACKENDS = ("egl", "osmesa")
_LIBRARIES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}
_INSTALL_HINT = (
    "Headless rendering needs EGL on a GPU machine (NVIDIA driver and `apt install libegl1 libopengl0`, then "
    "MUJOCO_GL=egl) or OSMesa on a CPU machine (`apt install libosmesa6`, then MUJOCO_GL=osmesa). Set "
    "MUJOCO_GL before mujoco is imported, or import embodied_rl.envs first and it is chosen for you."
)


class RenderingBackendError(RuntimeError):
    """MuJoCo cannot open an offscreen OpenGL context; the message says what to install."""


def nvidia_gpu_visible() -> bool:
    """True when the NVIDIA driver exposes at least one GPU to this process."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def library_available(backend: str) -> bool:
    """True when the shared library behind ``backend`` ("egl" or "osmesa") can be loaded."""
    for name in _LIBRARIES[backend]:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def choose_backend() -> str | None:
    """The backend to use: MUJOCO_GL if set, else (Linux) egl with an NVIDIA GPU, else osmesa, else egl.

    A set ``PYOPENGL_PLATFORM`` of egl/osmesa is honoured too, since MuJoCo refuses to mix the two.
    None means "leave MuJoCo's own default": macOS/Windows, or Linux without any headless library.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"].lower()
    if platform.system() != "Linux":
        return None
    pyopengl = os.environ.get("PYOPENGL_PLATFORM", "").lower()
    if pyopengl in HEADLESS_BACKENDS:
        return pyopengl
    preference = ("egl", "osmesa") if nvidia_gpu_visible() else ("osmesa", "egl")
    return next((backend for backend in preference if library_available(backend)), None)


def configure_rendering_backend() -> str | None:
    """Set ``MUJOCO_GL`` to `choose_backend()` unless it is set (non-empty) or mujoco is already imported.

    Returns the backend in use, None for MuJoCo's default. Also quiets PyOpenGL's INFO line about its optional
    accelerator module (under Hydra's logging it reads like an error in every run's output).
    """
    logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)
    if os.environ.get("MUJOCO_GL") or "mujoco" in sys.modules:
        return os.environ.get("MUJOCO_GL") or None
    backend = choose_backend()
    if backend is not None:
        os.environ["MUJOCO_GL"] = backend
    return backend


def open_renderer(model, height: int, width: int, shadows: bool = True):
    """A ``mujoco.Renderer`` for ``model``; ``shadows=False`` also drops reflections (3.5x to 6x faster on OSMesa).

    The model's offscreen buffer is enlarged when the image is bigger than it (a visual-only setting).
    Any failure to create the GL context becomes one `RenderingBackendError`.
    """
    import mujoco

    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as err:  # the GL stack raises many types (ImportError, RuntimeError, GLError, ...)
        backend = os.environ.get("MUJOCO_GL", "unset: MuJoCo's default, glfw, needs a display")
        raise RenderingBackendError(
            f"MuJoCo could not open an offscreen OpenGL context (MUJOCO_GL={backend}): {err}. {_INSTALL_HINT}"
        ) from err
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = shadows
    return renderer


def close_renderer(renderer) -> None:
    """Close ``renderer`` with its own GL context current, so others' GL buffers survive (mujoco#1186)."""
    gl_context = getattr(renderer, "_gl_context", None)
    if gl_context is not None:
        gl_context.make_current()
    renderer.close()


def turn_fixed_cameras_upright(model) -> list[str]:
    """Roll every fixed world camera that looks upside down by 180 degrees about its view axis.

    Meta-World's ``corner*`` cameras were tuned for mujoco-py, whose frames came out flipped; rendered
    correctly they are upside down. A 180-degree roll gives the upright view of the same camera (unlike
    flipping the image, which would mirror the scene). Only the visual camera pose changes. Returns the
    names of the cameras turned; call ``mj_forward`` (or reset) before rendering.
    """
    import mujoco

    turned = []
    roll_half_turn = np.array([0.0, 0.0, 0.0, 1.0])  # quaternion (w, x, y, z): 180 degrees about z
    for camera_id in range(model.ncam):
        on_world_body = model.cam_bodyid[camera_id] == 0
        if not on_world_body or model.cam_mode[camera_id] != mujoco.mjtCamLight.mjCAMLIGHT_FIXED:
            continue
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, model.cam_quat[camera_id])
        if rotation[7] < 0:  # z component of the camera's up axis (second column) points down
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, model.cam_quat[camera_id].copy(), roll_half_turn)
            model.cam_quat[camera_id] = quat
            turned.append(model.camera(camera_id).name)
    return turned

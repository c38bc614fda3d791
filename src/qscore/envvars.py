"""Environment variables that must be set before MuJoCo, dm_control or pygame is imported.

MuJoCo and dm_control read ``MUJOCO_GL`` when first imported, so every qscore module that
can lead to either (:mod:`qscore.envs`, :mod:`qscore.dmc`) imports this one first. Unless
the user chose, it is EGL (offscreen, no display needed) where libEGL is installed, else
rendering off: MuJoCo asked for EGL without libEGL fails at import, and training renders
nothing, so it must not need the library. Importing this module has no other effect.
"""

from __future__ import annotations

import ctypes.util
import os

MUJOCO_GL_OFF = ("off", "disable", "disabled", "false", "0")
"""Values of MUJOCO_GL that turn MuJoCo's rendering off (MuJoCo's and dm_control's spelling)."""

if "MUJOCO_GL" not in os.environ:
    os.environ["MUJOCO_GL"] = "egl" if ctypes.util.find_library("EGL") else "disable"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's banner on import


def mujoco_rendering_off() -> bool:
    """Whether MUJOCO_GL turns MuJoCo's rendering off."""
    return os.environ.get("MUJOCO_GL", "").strip().lower() in MUJOCO_GL_OFF

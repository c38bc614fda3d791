"""Creating Gymnasium environments with checked spaces and actions rescaled to [-1, 1].

MuJoCo and dm_control read MUJOCO_GL when first imported; :mod:`qscore.envvars` sets it,
and is imported (through :mod:`qscore.dmc`) before anything here can import either.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from qscore.bandit import register_bandits
from qscore.dmc import DMC_PREFIX, dmc_env_ids, make_dmc_env  # imports dm_control only on use
from qscore.envvars import MUJOCO_GL_OFF, mujoco_rendering_off  # noqa: F401 (re-exported)
from qscore.errors import EnvError  # EnvError is also importable from here
from qscore.ogbench_tasks import is_ogbench_id, ogbench_task_ids, register_ogbench_tasks

register_bandits()  # qscore's own toy tasks (qscore/MultimodalBandit-v0, ...); idempotent


def registered_env_ids() -> list[str]:
    return sorted(gym.registry.keys())


def available_env_ids() -> list[str]:
    """Registered Gymnasium ids (but of OGBench's, only its single-task ones), then the
    ``dmc:`` ids when dm_control is installed."""
    tasks = ogbench_task_ids()
    ids = [env_id for env_id in registered_env_ids() if not is_ogbench_id(env_id)] + tasks
    try:
        return ids + dmc_env_ids()
    except EnvError:
        return ids


def trainable_env_ids(check: bool = True) -> Iterator[str]:
    """The ids of :func:`available_env_ids` that qscore can train on, one by one: with
    ``check``, each Gymnasium env is made (and closed) and skipped when that fails (missing
    extras, discrete actions, ...); ``dmc:`` ids and OGBench's single-task ids are listed
    without making them."""
    for env_id in available_env_ids():
        if check and not (env_id.startswith(DMC_PREFIX) or is_ogbench_id(env_id)):
            try:
                make_env(env_id).close()
            except Exception:  # noqa: BLE001 - missing extras, unsupported spaces: skip it
                continue
        yield env_id


def _unknown_env_message(env_id: str) -> str:
    close = difflib.get_close_matches(env_id, registered_env_ids(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown environment id {env_id!r}{hint}"


def check_spaces(env_id: str, env: gym.Env) -> None:
    """Refuse action and observation spaces the learner cannot handle."""
    action_space, obs_space = env.action_space, env.observation_space
    if not isinstance(action_space, gym.spaces.Box):
        raise EnvError(
            f"{env_id} has a {type(action_space).__name__} action space; qscore needs a "
            "continuous Box action space"
        )
    if len(action_space.shape) != 1:
        raise EnvError(f"{env_id} has actions of shape {action_space.shape}; need a flat vector")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise EnvError(f"{env_id} has unbounded actions; qscore needs finite action bounds")
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(
            f"{env_id} has a {type(obs_space).__name__} observation space; qscore needs a flat "
            "Box of floats (flatten dict observations with a wrapper first)"
        )
    if len(obs_space.shape) != 1:
        raise EnvError(
            f"{env_id} has observations of shape {obs_space.shape} (images or grids); qscore "
            "handles flat state vectors only"
        )


PYGAME_RENDERED = ("classic_control", "box2d", "toy_text")
"""Gymnasium task families whose ``render`` needs pygame."""


def check_rendering(env_id: str) -> None:
    """Refuse to render a task whose renderer is missing, before any rollout: a MuJoCo-based
    task (Gymnasium MuJoCo or dm_control) when MuJoCo's rendering is off, a classic-control,
    Box2D or toy-text task without pygame."""
    uses_mujoco = env_id.startswith(DMC_PREFIX) or (
        env_id in gym.registry and "mujoco" in str(gym.registry[env_id].entry_point)
    )
    entry_point = str(gym.registry[env_id].entry_point) if env_id in gym.registry else ""
    needs_pygame = any(kind in entry_point for kind in PYGAME_RENDERED)
    if needs_pygame and importlib.util.find_spec("pygame") is None:
        raise EnvError(
            f"cannot render {env_id}: Gymnasium draws it with pygame, which is not installed"
            " (pip install pygame)"
        )
    if uses_mujoco and mujoco_rendering_off():
        raise EnvError(
            f"cannot render {env_id}: MuJoCo rendering is off (MUJOCO_GL="
            f"{os.environ['MUJOCO_GL']}; qscore sets 'disable' where libEGL is not "
            "installed). Install libEGL (Debian/Ubuntu: apt-get install libegl1) or set "
            "MUJOCO_GL to egl, osmesa or glfw"
        )


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times, summing rewards; stop early at an episode end."""

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def make_env(
    env_id: str,
    seed: int | None = None,
    render_mode: str | None = None,
    action_repeat: int = 1,
) -> gym.Env:
    """A Gymnasium env whose actions are rescaled to [-1, 1]; ``seed`` seeds its action space.

    The first ``reset`` must still be given the seed (see :func:`qscore.training.train`).
    Ids starting with ``dmc:`` are DeepMind Control Suite tasks (see :mod:`qscore.dmc`).
    """
    if render_mode:
        check_rendering(env_id)
    if env_id.startswith(DMC_PREFIX):
        env = make_dmc_env(env_id, seed, render_mode, action_repeat)
        check_spaces(env_id, env)
        if seed is not None:
            env.action_space.seed(seed)
        return env
    register_ogbench_tasks(env_id)
    if env_id not in gym.registry:
        raise EnvError(_unknown_env_message(env_id))
    kwargs = {"render_mode": render_mode} if render_mode else {}
    return wrap_env(gym.make(env_id, **kwargs), env_id, seed, action_repeat)


def wrap_env(env: gym.Env, name: str, seed: int | None = None, action_repeat: int = 1) -> gym.Env:
    """A made Gymnasium env, checked (:func:`check_spaces`), its actions rescaled to
    [-1, 1], ``action_repeat`` applied and its action space seeded; ``name`` is for errors."""
    check_spaces(name, env)
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(low == -1.0) and np.all(high == 1.0)):
        env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def original_action_bounds(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """The action bounds of the task inside an env from :func:`make_env` or
    :func:`wrap_env`, before the rescaling to [-1, 1] (float32)."""
    inner = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, gym.wrappers.RescaleAction):
            space = inner.env.action_space
            break
        inner = inner.env
    else:
        space = env.action_space
    return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)


def to_task_units(unit: Any, low: Any, high: Any) -> Any:
    """Actions in [-1, 1] (the agents' range) in the task's own units, between the bounds
    ``low`` and ``high`` (:func:`original_action_bounds`): the rescaling of :func:`wrap_env`.
    Elementwise, so it takes NumPy or JAX arrays (also inside an exported graph)."""
    return low + (unit + 1.0) * 0.5 * (high - low)


def to_unit_range(action: Any, low: Any, high: Any) -> Any:
    """The inverse of :func:`to_task_units`: actions in the task's units back in [-1, 1]."""
    return 2.0 * (action - low) / (high - low) - 1.0


def space_dims(env: gym.Env) -> tuple[int, int]:
    """(observation size, action size) of a checked env."""
    return int(env.observation_space.shape[0]), int(env.action_space.shape[0])

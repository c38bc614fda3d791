"""DeepMind Control Suite tasks as Gymnasium envs with flat observations and [-1, 1] actions.

Ids look like ``dmc:cheetah-run``: the domain and the task, split at the first hyphen (domains
such as ``ball_in_cup`` contain underscores, never hyphens). dm_control is an optional
dependency (``pip install "qscore[dmc]"``) and is imported only when an env is made.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

import qscore.envvars  # noqa: F401  (sets MUJOCO_GL before dm_control or MuJoCo is imported)
from qscore.errors import EnvError

DMC_PREFIX = "dmc:"
_INSTALL_HINT = 'dm_control is not installed; run: pip install "qscore[dmc]"'


def _suite() -> Any:
    """The ``dm_control.suite`` module, or EnvError when dm_control is missing."""
    try:
        from dm_control import suite
    except ImportError as error:
        raise EnvError(f"{_INSTALL_HINT} ({error})") from error
    return suite


def dmc_env_ids() -> list[str]:
    """Every ``dmc:DOMAIN-TASK`` id of ``dm_control.suite.ALL_TASKS``, sorted."""
    return sorted(f"{DMC_PREFIX}{domain}-{task}" for domain, task in _suite().ALL_TASKS)


def parse_dmc_id(env_id: str) -> tuple[str, str]:
    """(domain, task) of a known ``dmc:DOMAIN-TASK`` id; EnvError with suggestions otherwise."""
    ids = dmc_env_ids()
    if env_id in ids:
        domain, task = env_id[len(DMC_PREFIX) :].split("-", 1)
        return domain, task
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    else:
        domains = sorted({i[len(DMC_PREFIX) :].split("-", 1)[0] for i in ids})
        hint = f"ids are dmc:DOMAIN-TASK with DOMAIN one of {', '.join(domains)}"
    raise EnvError(f"unknown environment id {env_id!r}; {hint}")


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``action`` mapped linearly from [-1, 1] to [low, high], then clipped to those bounds."""
    action = np.asarray(action, np.float64)
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return np.clip(low + (action + 1.0) * 0.5 * (high - low), low, high)


def flatten_observation(observation: Any) -> np.ndarray:
    """The values of a dm_control observation dict, raveled in key order, as one float32 vector."""
    parts = [np.asarray(value, np.float32).ravel() for value in observation.values()]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class DMCEnv(gym.Env):
    """A dm_control suite task as a Gymnasium env.

    Holds the dm_control environment (``dmc_env``); observations are the flattened observation
    dict, actions lie in [-1, 1] and are rescaled to the task's bounds, and each ``step``
    repeats its action ``action_repeat`` times. The time limit ends an episode as ``truncated``.
    """

    def __init__(
        self,
        domain: str,
        task: str,
        seed: int | None = None,
        render_mode: str | None = None,
        action_repeat: int = 1,
        render_height: int = 480,
        render_width: int = 480,
    ) -> None:
        if int(action_repeat) != action_repeat or action_repeat < 1:
            raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.domain, self.task = domain, task
        self.action_repeat = int(action_repeat)
        self.render_mode = render_mode
        self.render_height, self.render_width = render_height, render_width
        self.dmc_env = _suite().load(domain, task, task_kwargs={"random": seed})

        spec = self.dmc_env.action_spec()
        self._action_low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
        self._action_high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)
        self._action_shape = spec.shape
        self.action_space = gym.spaces.Box(-1.0, 1.0, (int(np.prod(spec.shape)),), np.float32)
        obs_size = sum(int(np.prod(s.shape)) for s in self.dmc_env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)
        fps = round(1.0 / (self.dmc_env.control_timestep() * self.action_repeat))
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": fps}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a ``seed`` re-seeds the task so equal seeds give equal starts."""
        super().reset(seed=seed)
        if seed is not None:
            # Re-seed in place: the task and its helpers share this RandomState object.
            self.dmc_env.task.random.seed(seed)
        timestep = self.dmc_env.reset()
        return flatten_observation(timestep.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` ``action_repeat`` times (fewer if the episode ends); rewards summed."""
        native = rescale_action(action, self._action_low, self._action_high)
        native = native.reshape(self._action_shape)
        total = 0.0
        for _ in range(self.action_repeat):
            timestep = self.dmc_env.step(native)
            total += 0.0 if timestep.reward is None else float(timestep.reward)
            if timestep.last():
                break
        terminated = bool(timestep.last() and timestep.discount == 0.0)
        truncated = bool(timestep.last() and not terminated)
        return flatten_observation(timestep.observation), total, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """An HxWx3 uint8 frame from camera 0 when ``render_mode="rgb_array"``, else None."""
        if self.render_mode != "rgb_array":
            return None
        frame = self.dmc_env.physics.render(self.render_height, self.render_width, camera_id=0)
        return np.asarray(frame, np.uint8)

    def close(self) -> None:
        """Release the dm_control environment."""
        self.dmc_env.close()


def make_dmc_env(
    env_id: str,
    seed: int | None = None,
    render_mode: str | None = None,
    action_repeat: int = 1,
) -> DMCEnv:
    """The :class:`DMCEnv` for a ``dmc:DOMAIN-TASK`` id; EnvError for unknown ids."""
    domain, task = parse_dmc_id(env_id)
    return DMCEnv(domain, task, seed=seed, render_mode=render_mode, action_repeat=action_repeat)

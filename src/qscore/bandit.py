"""A one-state continuous bandit whose best actions form several separate modes.

The action is a point of [-1, 1]^2 and the reward is a sum of equal Gaussian bumps,

    r(a) = sum_k exp(-||a - p_k||^2 / (2 w^2)),

one per peak p_k, of width w. Every episode is one step long (``terminated`` after each
action) and the observation is a constant, so Q(s, a) = r(a): the best policies are those
that put their mass on the peaks, and an expressive policy can keep all of them while a
Gaussian one cannot. With the default width 0.3 and peaks 1 apart, each bump adds 0.004
at its neighbours, so every peak's reward is 1.008 (four peaks) or 1.000 (two), and the
reward midway between two neighbouring peaks is 0.5. The width is wide enough for the
slope of the reward to reach most of the box, which QSM's Q-score needs.

Importing :mod:`qscore.envs` registers two ids with Gymnasium (:func:`register_bandits`):
``qscore/MultimodalBandit-v0`` (four peaks at (+-0.5, +-0.5)) and
``qscore/BimodalBandit-v0`` (two peaks at (-0.5, -0.5) and (0.5, 0.5)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

MULTIMODAL_ID = "qscore/MultimodalBandit-v0"
"""Gymnasium id of the four-peak bandit."""
BIMODAL_ID = "qscore/BimodalBandit-v0"
"""Gymnasium id of the two-peak bandit."""
DEFAULT_WIDTH = 0.3
"""Standard deviation w of each Gaussian bump."""
OBS_DIM = 1


def default_peaks(num_peaks: int = 4) -> np.ndarray:
    """The peak locations of the registered bandits, shape (num_peaks, 2).

    Four peaks sit at the corners (+-0.5, +-0.5); two at (-0.5, -0.5) and (0.5, 0.5).
    """
    if num_peaks == 4:
        return np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]], np.float32)
    if num_peaks == 2:
        return np.array([[-0.5, -0.5], [0.5, 0.5]], np.float32)
    raise ValueError(f"num_peaks must be 2 or 4, got {num_peaks}")


def bandit_env_id(num_peaks: int) -> str:
    """The registered id of the bandit with ``num_peaks`` (2 or 4) default peaks."""
    default_peaks(num_peaks)  # validates
    return MULTIMODAL_ID if num_peaks == 4 else BIMODAL_ID


def bump_reward(actions: np.ndarray, peaks: np.ndarray, width: float = DEFAULT_WIDTH) -> np.ndarray:
    """r(a) = sum_k exp(-||a - p_k||^2 / (2 w^2)) for actions of shape (..., 2)."""
    actions = np.asarray(actions, np.float64)
    peaks = np.asarray(peaks, np.float64)
    squared = ((actions[..., None, :] - peaks) ** 2).sum(axis=-1)
    return np.exp(-squared / (2.0 * width**2)).sum(axis=-1)


class MultimodalBandit(gym.Env):
    """One state, actions in [-1, 1]^2, reward: equal Gaussian bumps at ``peaks``.

    Each ``step`` ends the episode (``terminated=True``); the observation is always
    ``[0.0]``. ``peaks`` is a sequence of 2-D points inside the action box (default: the
    four of :func:`default_peaks`) and ``width`` the bumps' standard deviation.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        peaks: Sequence[Sequence[float]] | np.ndarray | None = None,
        width: float = DEFAULT_WIDTH,
        render_mode: str | None = None,
    ) -> None:
        peaks = default_peaks(4) if peaks is None else np.asarray(peaks, np.float32)
        if peaks.ndim != 2 or peaks.shape[1] != 2 or len(peaks) < 1:
            raise ValueError(f"peaks must have shape (K, 2), got {peaks.shape}")
        if np.any(np.abs(peaks) > 1.0):
            raise ValueError("peaks must lie inside the action box [-1, 1]^2")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.peaks = peaks
        self.width = float(width)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.zeros(OBS_DIM, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, np.float32).reshape(2), -1.0, 1.0)
        reward = float(bump_reward(action, self.peaks, self.width))
        return self._obs(), reward, True, False, {}

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """The reward of actions of shape (..., 2), without stepping (for plots)."""
        return bump_reward(actions, self.peaks, self.width)


def bandit_peaks(env: gym.Env) -> np.ndarray:
    """The peak locations (K, 2) of a :class:`MultimodalBandit`, wrapped or not."""
    return np.asarray(env.unwrapped.peaks, np.float32).copy()


def register_bandits() -> None:
    """Register the two bandit ids with Gymnasium; calling it again changes nothing."""
    for env_id, num_peaks in ((MULTIMODAL_ID, 4), (BIMODAL_ID, 2)):
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="qscore.bandit:MultimodalBandit",
                kwargs={"peaks": default_peaks(num_peaks).tolist()},
            )


def bandit_episodes(actions: np.ndarray, peaks: np.ndarray | None = None) -> list[Any]:
    """One-step bandit episodes that took ``actions`` (N, 2), clipped to the box, with their
    rewards (bumps at ``peaks``, default the four-peak bandit's): a dataset for offline
    training (:func:`qscore.datasets.write_dataset`)."""
    from qscore.datasets import Trajectory

    peaks = default_peaks(4) if peaks is None else peaks
    start = np.zeros(OBS_DIM, np.float32)
    return [
        Trajectory([start, start], [a], [float(bump_reward(a, peaks))], terminated=True)
        for a in np.clip(actions, -1.0, 1.0).astype(np.float32)
    ]


def mixed_quality_actions(rng: np.random.Generator, count: int, good_share: float) -> np.ndarray:
    """Mostly poor bandit data: a ``good_share`` of actions near a peak of the four-peak
    bandit (std 0.05), the others uniform on the box."""
    good = rng.random(count) < good_share
    peaks = default_peaks(4)[rng.integers(0, 4, count)]
    near_peak = peaks + 0.05 * rng.standard_normal((count, 2))
    return np.where(good[:, None], near_peak, rng.uniform(-1.0, 1.0, (count, 2)))

"""A fixed-size host (NumPy) replay buffer of transitions, aware of termination.

Only ``terminated`` is stored: a transition cut by a time limit (``truncated``) keeps its
bootstrap, so it is stored as not terminated with its real next observation.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    """Transitions (s, a, r, s', terminated), each with a leading batch axis."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray


def replay_bytes(obs_dim: int, action_dim: int, capacity: int) -> int:
    """Memory of a buffer: float32 obs, next obs, action, reward and terminated flag per row."""
    return 4 * capacity * (2 * obs_dim + action_dim + 2)


def available_memory_bytes() -> int | None:
    """Physical memory currently available, or None where the OS does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions; sampling draws uniformly from written rows."""

    def __init__(self, obs_dim: int, action_dim: int, capacity: int) -> None:
        needed = replay_bytes(obs_dim, action_dim, capacity)
        available = available_memory_bytes()
        if available is not None and needed > 0.8 * available:
            raise MemoryError(
                f"a replay buffer of {capacity} transitions needs {needed / 2**30:.1f} GiB but "
                f"only {available / 2**30:.1f} GiB of memory is available; lower --buffer-size"
            )
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros((capacity,), np.float32)
        self.terminated = np.zeros((capacity,), np.float32)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
    ) -> None:
        """Write one transition over the oldest row once the buffer is full."""
        row = self.cursor
        self.obs[row] = obs
        self.action[row] = action
        self.reward[row] = reward
        self.next_obs[row] = next_obs
        self.terminated[row] = float(terminated)
        self.cursor = (row + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The written rows, oldest first (enough to rebuild the buffer exactly)."""
        order = np.arange(self.size)
        if self.size == self.capacity:
            order = (order + self.cursor) % self.capacity
        fields = ("obs", "action", "reward", "next_obs", "terminated")
        return {name: getattr(self, name)[order] for name in fields}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Refill from :meth:`state_dict`; keeps the newest rows if the capacity is smaller."""
        rows = min(len(state["reward"]), self.capacity)
        for name, values in state.items():
            getattr(self, name)[:rows] = values[len(values) - rows :]
        self.size = rows
        self.cursor = rows % self.capacity

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> Batch:
        """Rows drawn uniformly with replacement; arrays get leading axes ``shape``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, size=shape)
        return Batch(
            obs=self.obs[rows],
            action=self.action[rows],
            reward=self.reward[rows],
            next_obs=self.next_obs[rows],
            terminated=self.terminated[rows],
        )

"""A fixed-size host (NumPy) replay buffer of transitions, aware of termination.

A transition cut by a time limit (``truncated``) keeps its bootstrap, so it is stored as
not terminated with its real next observation; ``episode_end`` marks both kinds of end, so
that n-step returns never run across episodes.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    """Transitions (s, a, r, s', terminated, m), each with a leading batch axis.

    For an n-step sample, ``reward`` is sum_{i<m} gamma^i r_i over the m <= n steps from s
    to s' and the TD target bootstraps with gamma^m; plain transitions have m = 1.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    horizon: np.ndarray
    """[m] environment steps from ``obs`` to ``next_obs`` (float32)."""


def replay_bytes(obs_dim: int, action_dim: int, capacity: int) -> int:
    """Memory of a buffer: float32 obs, next obs, action, reward, terminated and episode-end
    flags per row."""
    return 4 * capacity * (2 * obs_dim + action_dim + 3)


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
        self.episode_end = np.zeros((capacity,), np.float32)
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
        episode_end: bool | None = None,
    ) -> None:
        """Write one transition over the oldest row once the buffer is full.

        ``episode_end`` (terminated or truncated; default: ``terminated``) says that the next
        row written starts a new episode.
        """
        row = self.cursor
        self.obs[row] = obs
        self.action[row] = action
        self.reward[row] = reward
        self.next_obs[row] = next_obs
        self.terminated[row] = float(terminated)
        self.episode_end[row] = float(terminated if episode_end is None else episode_end)
        self.cursor = (row + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The written rows, oldest first (enough to rebuild the buffer exactly)."""
        order = np.arange(self.size)
        if self.size == self.capacity:
            order = (order + self.cursor) % self.capacity
        fields = ("obs", "action", "reward", "next_obs", "terminated", "episode_end")
        return {name: getattr(self, name)[order] for name in fields}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Refill from :meth:`state_dict`; keeps the newest rows if the capacity is smaller.

        A state saved before ``episode_end`` existed gets it inferred: an episode ends
        where the next row does not start from this row's next observation.
        """
        state = dict(state)
        if "episode_end" not in state:
            state["episode_end"] = inferred_episode_ends(state)
        rows = min(len(state["reward"]), self.capacity)
        for name, values in state.items():
            getattr(self, name)[:rows] = values[len(values) - rows :]
        self.size = rows
        self.cursor = rows % self.capacity

    def sample(
        self,
        rng: np.random.Generator,
        shape: tuple[int, ...],
        n_step: int = 1,
        discount: float = 1.0,
        n_step_fraction: float = 1.0,
    ) -> Batch:
        """Rows drawn uniformly with replacement; arrays get leading axes ``shape``.

        With ``n_step`` = n > 1 each row i becomes the m-step transition from s_i to
        s_{i+m}, with reward sum_{j<m} discount^j r_{i+j}: m = n unless the episode ends
        first (the end's ``terminated`` flag is kept) or the newest row is reached.
        ``n_step_fraction`` = w < 1 keeps one step in each row with probability 1 - w, so
        that the TD targets mix one-step and n-step returns.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        first = rng.integers(0, self.size, size=shape)
        last = first
        reward = self.reward[first]  # fancy indexing copies: safe to add to
        horizon = np.ones(shape, np.float32)
        going = np.ones(shape, bool)
        if n_step > 1 and n_step_fraction < 1:
            going = rng.random(shape) < n_step_fraction
        for j in range(1, n_step):
            following = (last + 1) % self.capacity
            going &= (self.episode_end[last] == 0) & (following != self.cursor)
            last = np.where(going, following, last)
            reward += np.where(going, discount**j * self.reward[following], 0.0)
            horizon += going
        return Batch(
            obs=self.obs[first],
            action=self.action[first],
            reward=reward,  # float32: the buffer is, and += keeps it
            next_obs=self.next_obs[last],
            terminated=self.terminated[last],
            horizon=horizon,
        )


def inferred_episode_ends(state: dict[str, np.ndarray]) -> np.ndarray:
    """Episode-end flags of rows saved oldest first: a row ends its episode when it is
    terminated, is the newest row, or the next row does not start from its next observation."""
    continues = np.all(state["next_obs"][:-1] == state["obs"][1:], axis=-1)
    ends = np.ones(len(state["reward"]), np.float32)
    ends[:-1] = ~continues
    return np.maximum(ends, state["terminated"]).astype(np.float32)

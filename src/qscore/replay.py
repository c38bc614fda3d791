"""The replay buffer: a pytree of device arrays with pure ``insert`` and ``sample``.

A :class:`Replay` is a ring of ``capacity`` rows (s, a, r, s', terminated, episode end) and
two counters. Both functions are pure and jit-friendly, so the training loop inserts the
new transitions and samples its update batches inside one compiled call, and several
seeds' buffers stacked on a leading axis are handled with ``jax.vmap``.

A transition cut by a time limit (``truncated``) keeps its bootstrap, so it is stored as
not terminated with its real next observation; ``episode_end`` marks both kinds of end, so
that n-step returns never run across episodes.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Transition(NamedTuple):
    """Stored rows (s, a, r, s', terminated, episode end): one environment step, or one per
    seed with a leading seed axis. ``episode_end`` is terminated or truncated: n-step sums
    stop there."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    episode_end: jax.Array


FIELDS = Transition._fields
"""The stored columns, in the order of :func:`insert`'s arguments."""


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


class Replay(struct.PyTreeNode):
    """Ring buffer of transitions (rows) on the device; ``size`` rows are written, and
    ``cursor`` is the row the next insert writes (the oldest once the buffer is full)."""

    rows: Transition
    """The stored columns (s, a, r, s', terminated, episode end), each with a leading axis
    of ``capacity`` rows; ``episode_end`` is 1 where the row ends its episode."""
    cursor: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return self.rows.reward.shape[-1]


def create_replay(obs_dim: int, action_dim: int, capacity: int, seeds: int | None = None) -> Replay:
    """An empty buffer, or with ``seeds`` one per seed stacked on a leading axis; refused
    (MemoryError) when they would take over 80% of the available memory."""
    count = 1 if seeds is None else seeds
    needed = count * replay_bytes(obs_dim, action_dim, capacity)
    available = available_memory_bytes()
    if available is not None and needed > 0.8 * available:
        raise MemoryError(
            f"a replay buffer of {capacity} transitions"
            f"{f' for each of {count} seeds' if count > 1 else ''} needs"
            f" {needed / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory is"
            " available; lower --buffer-size"
        )
    lead = () if seeds is None else (seeds,)

    def zeros(*shape: int) -> jax.Array:
        return jnp.zeros(lead + shape, jnp.float32)

    return Replay(
        rows=Transition(
            obs=zeros(capacity, obs_dim),
            action=zeros(capacity, action_dim),
            reward=zeros(capacity),
            next_obs=zeros(capacity, obs_dim),
            terminated=zeros(capacity),
            episode_end=zeros(capacity),
        ),
        cursor=jnp.zeros(lead, jnp.int32),
        size=jnp.zeros(lead, jnp.int32),
    )


def insert(
    replay: Replay,
    obs: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    next_obs: jax.Array,
    terminated: jax.Array,
    episode_end: jax.Array,
) -> Replay:
    """The buffer with one transition written over its oldest row once full (pure)."""
    row = replay.cursor
    values = (obs, action, reward, next_obs, terminated, episode_end)
    rows = Transition(
        *(
            column.at[row].set(jnp.asarray(value, jnp.float32))
            for column, value in zip(replay.rows, values, strict=True)
        )
    )
    return replay.replace(
        rows=rows,
        cursor=(row + 1) % replay.capacity,
        size=jnp.minimum(replay.size + 1, replay.capacity),
    )


def sample(
    replay: Replay,
    key: jax.Array,
    shape: tuple[int, ...],
    n_step: int = 1,
    discount: float = 1.0,
    n_step_fraction: float = 1.0,
) -> Batch:
    """Rows drawn uniformly with replacement from the written ones; arrays get leading axes
    ``shape``. The buffer must hold at least one row.

    With ``n_step`` = n > 1 each row i becomes the m-step transition from s_i to s_{i+m},
    with reward sum_{j<m} discount^j r_{i+j}: m = n unless the episode ends first (the
    end's ``terminated`` flag is kept) or the newest row is reached. ``n_step_fraction``
    = w < 1 keeps one step in each row with probability 1 - w, so that the TD targets mix
    one-step and n-step returns.
    """
    if n_step < 1:
        raise ValueError(f"n_step must be >= 1, got {n_step}")
    rows = replay.rows
    row_key, mix_key = jax.random.split(key)
    first = jax.random.randint(row_key, shape, 0, jnp.maximum(replay.size, 1))
    last, reward = first, rows.reward[first]
    horizon = jnp.ones(shape, jnp.float32)
    going = jnp.ones(shape, bool)
    if n_step > 1 and n_step_fraction < 1:
        going = jax.random.uniform(mix_key, shape) < n_step_fraction
    for j in range(1, n_step):
        following = (last + 1) % replay.capacity
        going &= (rows.episode_end[last] == 0) & (following != replay.cursor)
        last = jnp.where(going, following, last)
        reward += jnp.where(going, discount**j * rows.reward[following], 0.0)
        horizon += going
    return Batch(
        obs=rows.obs[first],
        action=rows.action[first],
        reward=reward,
        next_obs=rows.next_obs[last],
        terminated=rows.terminated[last],
        horizon=horizon,
    )


def replay_state(replay: Replay) -> dict[str, np.ndarray]:
    """The written rows on the host, oldest first (enough to rebuild the buffer exactly)."""
    size, cursor = int(replay.size), int(replay.cursor)
    order = np.arange(size)
    if size == replay.capacity:
        order = (order + cursor) % replay.capacity
    return {name: np.asarray(getattr(replay.rows, name))[order] for name in FIELDS}


def load_replay(replay: Replay, state: dict[str, np.ndarray]) -> Replay:
    """``replay`` refilled from :func:`replay_state`, keeping the newest rows if the capacity
    is smaller. A state saved before ``episode_end`` existed gets it inferred: an episode
    ends where the next row does not start from this row's next observation."""
    state = dict(state)
    if "episode_end" not in state:
        state["episode_end"] = inferred_episode_ends(state)
    count = min(len(state["reward"]), replay.capacity)
    rows = Transition(
        *(
            getattr(replay.rows, name).at[:count].set(np.asarray(state[name][-count:], np.float32))
            for name in FIELDS
        )
    )
    return replay.replace(
        rows=rows,
        cursor=jnp.asarray(count % replay.capacity, jnp.int32),
        size=jnp.asarray(count, jnp.int32),
    )


def inferred_episode_ends(state: dict[str, np.ndarray]) -> np.ndarray:
    """Episode-end flags of rows saved oldest first: a row ends its episode when it is
    terminated, is the newest row, or the next row does not start from its next observation."""
    continues = np.all(state["next_obs"][:-1] == state["obs"][1:], axis=-1)
    ends = np.ones(len(state["reward"]), np.float32)
    ends[:-1] = ~continues
    return np.maximum(ends, state["terminated"]).astype(np.float32)

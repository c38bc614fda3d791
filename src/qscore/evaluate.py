"""Evaluation: episodes on a separate env, one chain sample per step, no exploration noise;
and the critics' error against the discounted returns those episodes actually earned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import jax
import numpy as np


def run_episodes(
    agent: Any,
    env: gym.Env,
    episodes: int,
    seed: int,
    key: jax.Array,
    frames: list[np.ndarray] | None = None,
    *,
    render_episodes: int = 1,
    trajectories: list[Trajectory] | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes of one agent; episode i starts from
    ``env.reset(seed=seed + i)``. ``frames`` and ``trajectories`` as
    :func:`run_episodes_seeds` (for this one env)."""

    policy = agent.frozen()

    def act(obs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, next_key = policy.act(obs[0], keys[0], explore=False)
        return np.asarray(action)[None], np.asarray(next_key)[None]

    returns = run_episodes_seeds(
        act,
        [env],
        episodes,
        [seed],
        np.asarray(key)[None],
        frames=frames,
        render_episodes=render_episodes,
        trajectories=None if trajectories is None else [trajectories],
    )
    return returns[0]


def run_episodes_seeds(
    act: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]],
    envs: list[gym.Env],
    episodes: int,
    seeds: list[int],
    keys: np.ndarray,
    *,
    frames: list[np.ndarray] | None = None,
    render_episodes: int = 1,
    trajectories: list[list[Trajectory]] | None = None,
    successes: list[list[float]] | None = None,
) -> np.ndarray:
    """Returns (len(envs), episodes) of evaluation episodes run on all envs in lockstep.

    Env i's episode e starts from ``reset(seed=seeds[i] + e)``. Each step, one call
    ``act(observations, keys)`` gives every env's action and next key (one row each); an env
    whose episode has ended waits, and its key does not move. With ``frames``, the frames
    of env 0's first ``render_episodes`` episodes are appended to it (its env must render
    ``rgb_array``); with ``trajectories``, env i's episodes go to ``trajectories[i]``; with
    ``successes``, ``successes[i]`` gets the ``success`` flag of the last step of each of
    env i's episodes, where its env reports one (OGBench's tasks do).
    """
    returns = np.zeros((len(envs), episodes), np.float64)
    keys = np.asarray(keys)
    for episode in range(episodes):
        record = frames is not None and episode < render_episodes
        starts = [env.reset(seed=seed + episode)[0] for env, seed in zip(envs, seeds, strict=True)]
        obs = [np.asarray(start, np.float32) for start in starts]
        if record:
            frames.append(envs[0].render())
        running, terminated = np.ones(len(envs), bool), np.zeros(len(envs), bool)
        seen: list[list[tuple]] = [[] for _ in envs]
        while running.any():
            actions, next_keys = act(np.stack(obs), keys)
            actions = np.asarray(actions, np.float32)
            keys = np.where(running[:, None], np.asarray(next_keys), keys)
            for i in np.flatnonzero(running):
                next_obs, reward, terminated[i], truncated, info = envs[i].step(actions[i])
                returns[i, episode] += float(reward)
                seen[i].append((obs[i], actions[i], float(reward)))
                obs[i] = np.asarray(next_obs, np.float32)
                running[i] = not (terminated[i] or truncated)
                if successes is not None and not running[i] and "success" in info:
                    successes[i].append(float(info["success"]))
                if record and i == 0:
                    frames.append(envs[0].render())
        for i in range(len(envs) if trajectories is not None else 0):
            states, taken, rewards = zip(*seen[i], strict=True)
            trajectories[i].append(
                Trajectory(np.stack(states), np.stack(taken), np.asarray(rewards), terminated[i])
            )
    return returns


@dataclass(frozen=True)
class Trajectory:
    """One evaluation episode: its states, actions and rewards, and how it ended."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool


def discounted_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """G_t = sum_{i >= t} gamma^(i - t) r_i for every step t of one episode."""
    returns = np.zeros(len(rewards), np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + discount * running
        returns[t] = running
    return returns


def critic_error(agent: Any, trajectories: list[Trajectory], horizon_weight: float = 0.01) -> dict:
    """How far the critics' min_j Q_phi_j(s_t, a_t) is from the discounted return G_t earned.

    States of a truncated episode whose remaining steps carry more than ``horizon_weight``
    of the discount mass (gamma^remaining > horizon_weight) are left out: their G_t misses
    the rewards after the time limit. Returns ``q_bias`` = mean(Q - G) (positive:
    over-estimation) and ``q_relative_error`` = mean|Q - G| / mean|G|, or an empty dict when
    no state qualifies.
    """
    from qscore.agents.common import q_values

    discount = agent.config.discount
    obs, actions, targets = [], [], []
    for trajectory in trajectories:
        returns = discounted_returns(trajectory.rewards, discount)
        remaining = np.arange(len(returns), 0, -1)
        keep = np.ones(len(returns), bool)
        if not trajectory.terminated:
            keep = discount**remaining <= horizon_weight
        obs.append(trajectory.obs[keep])
        actions.append(trajectory.actions[keep])
        targets.append(returns[keep])
    target = np.concatenate(targets)
    if target.size == 0:
        return {}
    q = q_values(agent.config, agent.critic_params, np.concatenate(obs), np.concatenate(actions))
    # Critics that learn from rescaled rewards predict returns in those units.
    q_in_reward_units = np.asarray(q).min(axis=0) * float(agent.reward_scale)
    error = q_in_reward_units - target
    return {
        "q_bias": float(error.mean()),
        "q_relative_error": float(np.abs(error).mean() / max(np.abs(target).mean(), 1e-8)),
    }

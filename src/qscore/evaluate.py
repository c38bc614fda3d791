"""Evaluation: episodes on a separate env, one chain sample per step, no exploration noise;
and the critics' error against the discounted returns those episodes actually earned."""

from __future__ import annotations

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
    render_episodes: int = 1,
    trajectories: list[Trajectory] | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes; episode i starts from ``env.reset(seed=seed + i)``.

    When ``frames`` is a list, the frames of the first ``render_episodes`` episodes are
    appended to it (the env must have been made with ``render_mode="rgb_array"``). When
    ``trajectories`` is a list, each episode's :class:`Trajectory` is appended to it.
    """
    returns = np.zeros(episodes, np.float64)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        record = frames is not None and episode < render_episodes
        if record:
            frames.append(env.render())
        done, terminated = False, False
        seen: list[tuple[np.ndarray, np.ndarray, float]] = []
        while not done:
            state = np.asarray(obs, np.float32)
            action, key = agent.act(state, key, explore=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += float(reward)
            seen.append((state, np.asarray(action, np.float32), float(reward)))
            done = terminated or truncated
            if record:
                frames.append(env.render())
        if trajectories is not None:
            states, actions, rewards = zip(*seen, strict=True)
            trajectories.append(
                Trajectory(np.stack(states), np.stack(actions), np.asarray(rewards), terminated)
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
    q_in_reward_units = np.asarray(q).min(axis=0) * float(getattr(agent, "reward_scale", 1.0))
    error = q_in_reward_units - target
    return {
        "q_bias": float(error.mean()),
        "q_relative_error": float(np.abs(error).mean() / max(np.abs(target).mean(), 1e-8)),
    }

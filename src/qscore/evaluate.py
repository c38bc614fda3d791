"""Evaluation: episodes on a separate env, one chain sample per step, no exploration noise."""

from __future__ import annotations

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
) -> np.ndarray:
    """Returns of ``episodes`` episodes; episode i starts from ``env.reset(seed=seed + i)``.

    When ``frames`` is a list, the frames of the first ``render_episodes`` episodes are
    appended to it (the env must have been made with ``render_mode="rgb_array"``).
    """
    returns = np.zeros(episodes, np.float64)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        record = frames is not None and episode < render_episodes
        if record:
            frames.append(env.render())
        done = False
        while not done:
            action, key = agent.act(np.asarray(obs, np.float32), key, explore=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += float(reward)
            done = terminated or truncated
            if record:
                frames.append(env.render())
    return returns

"""Measure the return of a uniform-random policy on the tasks that have normalizers.

The numbers are the 0 point of the normalized score in :mod:`qscore.normalizers`. Each
task runs ``--episodes`` episodes; episode ``i`` resets the env with seed ``i`` and draws
its actions from a NumPy generator seeded with ``i``, uniformly in the action space (the
env's actions are rescaled to [-1, 1] by :func:`qscore.envs.make_env`, an affine map, so
uniform in [-1, 1] is uniform in the original bounds). Prints a JSON object
``{env_id: {"mean": ..., "std": ..., "episodes": ...}}``.

Usage::

    python benchmarks/random_scores.py [--episodes 20] [ENV_ID ...]
"""

from __future__ import annotations

import json

import numpy as np

from qscore.envs import make_env

from _common import make_parser

TASKS = [
    "InvertedPendulum-v4",
    "HalfCheetah-v4",
    "Hopper-v4",
    "Walker2d-v4",
    "Humanoid-v4",
    "InvertedPendulum-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Humanoid-v5",
    "Pendulum-v1",
]


def random_returns(env_id: str, episodes: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` uniform-random episodes, seeds 0..episodes-1."""
    env = make_env(env_id)
    low, high = env.action_space.low, env.action_space.high
    returns = np.zeros(episodes)
    for seed in range(episodes):
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        done = False
        while not done:
            action = rng.uniform(low, high).astype(env.action_space.dtype)
            _, reward, terminated, truncated, _ = env.step(action)
            returns[seed] += float(reward)
            done = terminated or truncated
    env.close()
    return returns


def main() -> None:
    parser = make_parser(__doc__, json_help=None)
    parser.add_argument("envs", nargs="*", default=TASKS, help="env ids (default: all)")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    results = {}
    for env_id in args.envs:
        returns = random_returns(env_id, args.episodes)
        results[env_id] = {
            "mean": round(float(returns.mean()), 3),
            "std": round(float(returns.std()), 3),
            "episodes": args.episodes,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

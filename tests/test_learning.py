"""Learning tests, through the real loop: each algorithm must solve Pendulum-v1 in 10k
steps, and the `robust` QSM preset must also be invariant to the reward scale and learn
Reacher-v4, where the authors' settings fail.

A random or broken policy scores about -1200 to -1600 on Pendulum-v1; a good one about
-150 to -200 (over random starts). The returns seen when the tests were written are in
docs/benchmarks.md and docs/robust_qsm.md.
"""

import jax
import numpy as np
import pytest

from qscore.agents import get_algorithm
from qscore.checkpoint import latest_checkpoint, load_agent
from qscore.config import make_config
from qscore.envs import make_env, space_dims
from qscore.evaluate import run_episodes
from qscore.logs import read_csv
from qscore.train import EVAL_SEED_OFFSET, train

LOOP = {
    "env_id": "Pendulum-v1",
    "seed": 0,
    "total_steps": 10_000,
    "warmup_steps": 1_000,
    "eval_every": 2_000,
    "eval_episodes": 10,
    "checkpoint_every": 0,
}
SMALL = {"actor_hidden": (128, 128), "critic_hidden": (128, 128)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "preset", "agent"),
    [("qsm", "fast", {}), ("sac", "paper", SMALL), ("td3", "paper", SMALL)],
)
def test_solves_pendulum(tmp_path, algo, preset, agent):
    summary = train(make_config(preset, agent, LOOP, algo), tmp_path / "run", progress=False)
    returns = [float(r["return_mean"]) for r in read_csv(tmp_path / "run" / "eval.csv")]
    assert returns[0] < -700, returns  # 1000 updates in: not solved by luck
    assert summary["best_eval"]["return_mean"] > -300, returns
    assert returns[-1] > -450, returns


ROBUST_SMALL = {"actor_hidden": (128, 128), "critic_hidden": (128, 128)}


@pytest.mark.slow
def test_robust_preset_is_invariant_to_the_reward_scale(tmp_path):
    """The `robust` preset solves Pendulum-v1 with its rewards multiplied by 0.1, 1 and 10,
    and ends in the same return band each time (evaluation reports raw returns)."""
    finals = {}
    for scale in (0.1, 1.0, 10.0):
        loop = {**LOOP, "reward_scale": scale}
        run = tmp_path / f"scale_{scale}"
        summary = train(make_config("robust", ROBUST_SMALL, loop), run, progress=False)
        returns = [float(r["return_mean"]) for r in read_csv(run / "eval.csv")]
        assert returns[0] < -700, (scale, returns)
        assert summary["best_eval"]["return_mean"] > -300, (scale, returns)
        assert returns[-1] > -450, (scale, returns)
        finals[scale] = returns[-1]
    assert max(finals.values()) - min(finals.values()) < 150, finals


class _StillArm:
    """A policy that never moves: action 0 (zero torque) at every step."""

    def __init__(self, action_dim: int) -> None:
        self.action = np.zeros(action_dim, np.float32)

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool = False):
        return self.action, key


def _final_distances(agent, env, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns of 50 evaluation episodes, and each episode's mean distance between fingertip
    and target over its last 10 steps (Reacher's last 3 observations are their offset)."""
    trajectories = []
    key = jax.random.PRNGKey(0)
    returns = run_episodes(agent, env, 50, first_seed, key, trajectories=trajectories)
    distances = [np.linalg.norm(t.obs[-10:, -3:], axis=1).mean() for t in trajectories]
    return returns, np.asarray(distances)


@pytest.mark.slow
def test_robust_preset_learns_reacher_where_the_paper_preset_fails(tmp_path):
    """Reacher-v4 is a task of issue 7 on which the authors' settings fail: their bang-bang
    actions pay the full control cost and score about -110; uniform-random actions score
    about -44 (docs/robust_qsm.md). An arm that never moves scores about -12, close to the
    issue's target of -10, so on the same 50 episodes `robust` must beat the still arm's
    return and end nearer the target than it does.

    With the present preset this run scored -8.3 against the still arm's -12.6, with a
    final distance of 0.11 against 0.25 (the preset before it: -9.8 and 0.16). The absolute
    bound is -11, not the issue's -10, because another CPU computes another run and single
    seeds have ended within 0.1 of -10 (seed 1: -9.92 over 50 episodes);
    docs/robust_qsm.md measures the -10 target over 5 seeds."""
    loop = {
        "env_id": "Reacher-v4",
        "seed": 0,
        "total_steps": 15_000,
        "warmup_steps": 2_000,
        "eval_every": 15_000,
        "eval_episodes": 50,
        "checkpoint_every": 0,
    }
    config = make_config("robust", {}, loop)
    summary = train(config, tmp_path / "run", progress=False)
    env = make_env("Reacher-v4")
    template = get_algorithm("qsm").create(config.agent, *space_dims(env), config.train.seed)
    agent, step = load_agent(latest_checkpoint(tmp_path / "run"), template)
    first_seed = loop["seed"] + EVAL_SEED_OFFSET
    learned_returns, learned_distance = _final_distances(agent, env, first_seed)
    still_returns, still_distance = _final_distances(_StillArm(2), env, first_seed)
    assert step == 15_000 and summary["final_eval"]["return_mean"] > -11, summary["final_eval"]
    assert learned_returns.mean() > still_returns.mean() + 1
    assert learned_distance.mean() < 0.8 * still_distance.mean()

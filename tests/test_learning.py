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
from qscore.training import EVAL_SEED_OFFSET, train, train_seeds

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
    and ends in the same return band each time (evaluation reports raw returns).

    The first evaluation is at the end of the warm-up, before any update: it shows that
    the task is not solved by the untrained policy. (After 1000 updates, the first
    evaluation of the other tests, `robust` can already score -655.)"""
    finals = {}
    for scale in (0.1, 1.0, 10.0):
        loop = {**LOOP, "reward_scale": scale, "eval_every": LOOP["warmup_steps"]}
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

    def frozen(self) -> "_StillArm":
        return self


REACHER_EPISODES = 200


def _final_distances(agent, env, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns of `REACHER_EPISODES` evaluation episodes, and each episode's mean distance
    between fingertip and target over its last 10 steps (Reacher's last 3 observations are
    their offset)."""
    trajectories = []
    key = jax.random.PRNGKey(0)
    returns = run_episodes(agent, env, REACHER_EPISODES, first_seed, key, trajectories=trajectories)
    distances = [np.linalg.norm(t.obs[-10:, -3:], axis=1).mean() for t in trajectories]
    return returns, np.asarray(distances)


@pytest.mark.slow
def test_robust_preset_learns_reacher_where_the_paper_preset_fails(tmp_path):
    """Reacher-v4 is a task of issue 7 on which the authors' settings fail: their bang-bang
    actions pay the full control cost and score about -110; uniform-random actions score
    about -44 (docs/robust_qsm.md). An arm that never moves scores about -12, close to the
    issue's target of -10, so on the same 200 episodes `robust` must beat the still arm's
    return and end much nearer the target than it does.

    Two seeds (0 and 1) train in one process and the bounds apply to their mean, because
    single seeds vary more than the bounds allow. With the loop before the training engine
    (2026-12-07), 8 seeds scored -8.91 to -10.83 over 200 episodes (mean -9.80) against the
    still arm's -11.99 (docs/robust_qsm.md, section 6). The engine draws warm-up actions and
    replay samples from other random streams, and under them seed 0 alone scores -12.70
    (-11.92 when trained beside seeds 1-3, which score -9.22, -9.66 and -10.26): about one
    seed in ten is a poor one (docs/data/engine_reacher_check/). The bounds are unchanged:
    a mean return above -11, at least 1 above the still arm, and a final distance to the
    target under 0.7 of the still arm's. Their mean clears the second bound by only about
    0.4, so this test can fail on a CPU that computes other runs."""
    loop = {
        **LOOP,
        "env_id": "Reacher-v4",
        "total_steps": 15_000,
        "warmup_steps": 2_000,
        "eval_every": 15_000,
        "eval_episodes": 10,
        "checkpoint_every": 0,
    }
    config = make_config("robust", {}, loop)
    train_seeds(config, [0, 1], tmp_path / "run", progress=False)
    env = make_env("Reacher-v4")
    first_seed = loop["seed"] + EVAL_SEED_OFFSET
    learned_returns, learned_distance = [], []
    for seed in (0, 1):
        template = get_algorithm("qsm").create(config.agent, *space_dims(env), seed)
        agent, step = load_agent(latest_checkpoint(tmp_path / "run" / f"seed_{seed}"), template)
        assert step == 15_000
        returns, distances = _final_distances(agent, env, first_seed)
        learned_returns.append(returns.mean())
        learned_distance.append(distances.mean())
    still_returns, still_distance = _final_distances(_StillArm(2), env, first_seed)
    figures = {
        "returns": learned_returns,
        "return": np.mean(learned_returns),
        "still_return": still_returns.mean(),
        "distance": np.mean(learned_distance),
        "still_distance": still_distance.mean(),
    }
    assert figures["return"] > -11, figures
    assert figures["return"] > figures["still_return"] + 1, figures
    assert figures["distance"] < 0.7 * figures["still_distance"], figures

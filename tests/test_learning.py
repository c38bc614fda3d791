"""Learning tests: each algorithm must solve Pendulum-v1 in 10k steps, through the real loop.

A random or broken policy scores about -1200 to -1600 on Pendulum-v1; a good one about
-150 to -200 (over random starts). The returns seen when the tests were written are in
docs/benchmarks.md.
"""

import pytest

from qscore.config import make_config
from qscore.logs import read_csv
from qscore.train import train

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

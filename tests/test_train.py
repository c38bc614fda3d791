import json
import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from qscore.config import make_config
from qscore.logs import read_csv
from qscore.training import RunDirError, collect_transition, train

from .conftest import TINY


class _CountdownEnv(gym.Env):
    """Episodes of 3 steps that end by termination or by truncation (a time limit)."""

    observation_space = gym.spaces.Box(-10, 10, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, ends_by: str) -> None:
        self.ends_by, self.t = ends_by, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t == 3
        obs = np.full(1, self.t, np.float32)
        return (
            obs,
            1.0,
            end and self.ends_by == "terminated",
            end and self.ends_by == "truncated",
            {},
        )


@pytest.mark.parametrize("ends_by", ["terminated", "truncated"])
def test_only_termination_stops_bootstrapping(ends_by):
    env = _CountdownEnv(ends_by)
    obs, _ = env.reset()
    ended, rows = [], []
    for _ in range(3):
        row, episode_ended = collect_transition(env, obs, np.zeros(1, np.float32))
        obs = row[3]
        ended.append(episode_ended)
        rows.append(row)
    assert ended == [False, False, True]
    _, _, rewards, next_obs, terminated, episode_end = zip(*rows, strict=True)
    np.testing.assert_array_equal(np.concatenate(next_obs), [1, 2, 3])  # true final observation
    expected_flag = 1.0 if ends_by == "terminated" else 0.0
    np.testing.assert_array_equal(terminated, [0.0, 0.0, expected_flag])
    np.testing.assert_array_equal(episode_end, [0.0, 0.0, 1.0])  # stops n-step sums


def _tiny_run(**train):
    values = {
        "env_id": "Pendulum-v1",
        "total_steps": 300,
        "warmup_steps": 100,
        "eval_every": 150,
        "eval_episodes": 1,
        "checkpoint_every": 150,
        "log_every": 100,
    }
    return make_config("fast", TINY, {**values, **train})


def test_run_directory_contents(tmp_path):
    run = tmp_path / "run"
    summary = train(_tiny_run(), run, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["agent"]["actor_hidden"] == [32, 32] and config["preset"] == "fast"
    assert config["versions"]["jax"] and "git_commit" in config
    evals = read_csv(run / "eval.csv")
    assert [int(r["step"]) for r in evals] == [150, 300]
    assert {"step", "return_mean", "return_std", "episodes", "wall_time"} <= set(evals[0])
    rows = read_csv(run / "train.csv")
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    for column in (
        "critic_loss",
        "actor_loss",
        "q_mean",
        "q_grad_norm",
        "score_alignment",
        "action_spread",
        "action_at_bound",
        "steps_per_sec",
    ):
        assert math.isfinite(float(rows[-1][column])), column
    assert rows[0]["critic_loss"] == ""  # no update during the warm-up
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["step_000000150", "step_000000300"]
    assert not (run / "checkpoints" / "step_000000150" / "replay.npz").exists()
    assert (run / "checkpoints" / "step_000000300" / "replay.npz").exists()
    assert any((run / "tensorboard").iterdir())
    saved = json.loads((run / "summary.json").read_text())
    assert saved["status"] == "completed" and saved["steps"] == 300
    logged = [float(r["return_mean"]) for r in evals]  # CSV keeps 6 significant digits
    assert saved["final_eval"]["return_mean"] == pytest.approx(logged[-1], rel=1e-5)
    assert saved["best_eval"]["return_mean"] == pytest.approx(max(logged), rel=1e-5)
    assert summary == saved


def test_same_seed_gives_identical_logs(tmp_path):
    def losses(name, seed):
        train(_tiny_run(seed=seed), tmp_path / name, progress=False)
        return [r["critic_loss"] for r in read_csv(tmp_path / name / "train.csv")]

    assert losses("a", 3) == losses("b", 3)
    assert losses("c", 4) != losses("d", 3)


def test_refuses_to_overwrite_a_run(tmp_path):
    run = tmp_path / "run"
    (run).mkdir()
    (run / "eval.csv").write_text("precious\n")
    with pytest.raises(RunDirError, match="already exists"):
        train(_tiny_run(), run, progress=False)
    assert (run / "eval.csv").read_text() == "precious\n"


def test_the_command_line_refuses_an_existing_run_before_importing_jax(tmp_path):
    """The refusal comes before the slow part (JAX, envs, agents), so it is immediate."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.csv").write_text("precious\n")
    code = (
        "import sys; from qscore.cli import main; "
        f"code = main(['train', '--env', 'Pendulum-v1', '--out', {str(run)!r}]); "
        "print(code, 'jax' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "already exists and is not empty" in done.stderr
    assert (run / "eval.csv").read_text() == "precious\n"


def test_discounted_returns_and_critic_error():
    from qscore.agents.qsm import create_qsm
    from qscore.evaluate import Trajectory, critic_error, discounted_returns

    from .helpers import constant_critics

    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 4.0]), 0.5), [3.0, 4.0, 4.0])
    config = make_config("fast", {"actor_hidden": (8,), "critic_hidden": (8,)}).agent
    agent = create_qsm(config, 3, 2, seed=0)
    agent = agent.replace(critic_params=constant_critics(agent.critic_params, [5.0, 7.0]))
    ended = Trajectory(np.zeros((3, 3)), np.zeros((3, 2)), np.array([1.0, 1.0, 1.0]), True)
    # Q = min(5, 7) = 5 everywhere; G = 1 + 0.99 + 0.99^2, 1.99, 1 for a terminated episode.
    returns = discounted_returns(ended.rewards, 0.99)
    error = critic_error(agent, [ended])
    assert error["q_bias"] == pytest.approx(5.0 - returns.mean(), rel=1e-5)
    assert error["q_relative_error"] == pytest.approx((5.0 - returns).mean() / returns.mean())
    # A truncated episode's last steps (whose G misses rewards past the limit) are left out.
    cut = Trajectory(np.zeros((3, 3)), np.zeros((3, 2)), np.ones(3), False)
    assert critic_error(agent, [cut]) == {}
    long_cut = Trajectory(np.zeros((600, 3)), np.zeros((600, 2)), np.ones(600), False)
    kept = critic_error(agent, [long_cut])
    assert kept["q_bias"] < 5.0 - 99.0  # only early states, whose G is close to 1 / (1 - 0.99)

"""The Python API: make_config by field name, train without a run dir, load, Policy."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import qscore
from qscore.agents.qsm import create_qsm
from qscore.config import ConfigError

from .conftest import TINY

TINY_TD3 = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 16}
TINY_TRAIN = {"total_steps": 150, "warmup_steps": 100, "eval_every": 0, "eval_episodes": 1}


def test_the_example_in_docs_api_md_runs():
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/api.md", "exec"), {})


def test_make_config_routes_fields_by_name_with_the_cli_defaults():
    config = qscore.make_config(env="Pendulum-v1", utd=2, total_steps=1000)
    assert (config.algo, config.preset) == ("qsm", "robust")
    assert config.agent.utd == 2 and config.train.total_steps == 1000
    assert config.train.env_id == "Pendulum-v1"
    assert qscore.make_config("sac").preset == "paper"
    with pytest.raises(ConfigError, match="unknown qsm or training field"):
        qscore.make_config(learning_rate=1.0)


def test_train_with_a_run_dir_then_load_gives_the_same_policy(tmp_path):
    config = qscore.make_config("td3", env="Pendulum-v1", **TINY_TD3, **TINY_TRAIN)
    result = qscore.train(config, tmp_path / "run")
    assert result.run_dir == tmp_path / "run" and (tmp_path / "run" / "summary.json").is_file()
    loaded = qscore.load(tmp_path / "run")
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(obs, seed=3), result.policy(obs, seed=3), rtol=1e-6)
    assert np.all(np.abs(loaded(obs)) <= 2.0) and loaded(obs[0]).shape == (1,)


class Unregistered(gym.Env):
    """A one-step task that is no registered id: reward -|a - 0.5| on actions in [0, 1]."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), -abs(float(action[0]) - 0.5), True, False, {}


@pytest.mark.parametrize("make", [Unregistered, Unregistered()], ids=["callable", "instance"])
def test_an_unregistered_env_trains_from_a_callable_or_an_instance(make, tmp_path):
    config = qscore.make_config("td3", env="my-task", **TINY_TD3, **TINY_TRAIN)
    result = qscore.train(config, env=make)
    assert result.run_dir is None and result.summary["steps"] == 150
    action = result.policy(np.zeros(2, np.float32))
    assert action.shape == (1,) and 0.0 <= action[0] <= 1.0  # the task's own units


def test_policy_options_change_the_qsm_chain():
    config = qscore.make_config("qsm", preset="fast", env="Pendulum-v1", **TINY).agent
    bounds = np.full(1, 2.0, np.float32)
    policy = qscore.Policy(create_qsm(config, 3, 1, seed=0), -bounds, bounds, obs_dim=3)
    picky = policy.with_options(best_of_n_eval=4)
    assert picky.agent.config.best_of_n_eval == 4 and policy.agent.config.best_of_n_eval == 1
    obs = np.zeros((3, 3), np.float32)
    assert picky(obs).shape == (3, 1)
    with pytest.raises(ConfigError):
        policy.with_options(best_of_n_eval=0)


def test_evaluate_run_gives_the_returns_qscore_eval_prints(tmp_path, capsys):
    from qscore.cli import main
    from qscore.errors import RunDirError

    run = tmp_path / "run"
    qscore.train(qscore.make_config("qsm", "fast", "Pendulum-v1", **TINY, **TINY_TRAIN), run)
    result = qscore.evaluate_run(run, episodes=2, seed=3, best_of_n=2)
    assert (result.algo, result.env_id, result.step) == ("qsm", "Pendulum-v1", 150)
    assert result.returns.shape == (2,) and (result.best_of_n, result.runtime) == (2, "jax")
    assert result.video is None and result.video_frames == 0
    assert main(["eval", str(run), "--episodes", "2", "--seed", "3", "--best-of-n", "2"]) == 0
    printed = capsys.readouterr().out
    mean, std = result.returns.mean(), result.returns.std()
    assert f"return {mean:.2f} +- {std:.2f} over 2 episodes (best of 2 samples by Q)" in printed
    again = qscore.evaluate_run(run, episodes=2, seed=3, best_of_n=2)
    np.testing.assert_array_equal(again.returns, result.returns)
    with pytest.raises(ConfigError, match="--episodes must be >= 1"):
        qscore.evaluate_run(run, episodes=0)
    with pytest.raises(ConfigError, match="best_of_n_eval must be >= 1"):
        qscore.evaluate_run(run, best_of_n=0)
    with pytest.raises(RunDirError, match="not a run directory"):
        qscore.evaluate_run(tmp_path / "nothing")

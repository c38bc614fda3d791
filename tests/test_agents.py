"""The interface every agent shares: determinism, save/load, utd, vmapping over seeds."""

import dataclasses

import jax
import numpy as np
import pytest

from qscore.agents import get_algorithm
from qscore.checkpoint import load_agent, save_run_checkpoint
from qscore.config import make_config

from .conftest import TINY
from .helpers import ACTION_DIM, OBS_DIM, check_seeds_vmap, leaves_equal, random_batches

SMALL = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 16}
ALGOS = ["qsm", "sac", "td3"]


def _config(algo: str, **changes):
    config = make_config("fast", TINY if algo == "qsm" else SMALL, algo=algo).agent
    if algo == "td3":
        changes.setdefault("policy_delay", 1)  # so one update moves the actor too
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize("algo", ALGOS)
def test_act_gives_bounded_numpy_actions_as_a_function_of_the_key(algo):
    algorithm = get_algorithm(algo)
    agent = algorithm.create(_config(algo), OBS_DIM, ACTION_DIM, seed=0)
    for obs in (np.ones(OBS_DIM, np.float32), 100.0 * np.ones(OBS_DIM, np.float32)):
        for explore in (False, True):
            action, next_key = agent.act(obs, jax.random.PRNGKey(2), explore)
            again, _ = agent.act(obs, jax.random.PRNGKey(2), explore)
            assert isinstance(action, np.ndarray)
            assert action.shape == (ACTION_DIM,) and action.dtype == np.float32
            assert np.all(np.abs(action) <= 1.0)
            np.testing.assert_array_equal(action, again)
            assert not np.array_equal(np.asarray(next_key), np.asarray(jax.random.PRNGKey(2)))


@pytest.mark.parametrize("algo", ALGOS)
def test_same_seed_same_result_different_seed_differs(algo):
    algorithm, config = get_algorithm(algo), _config(algo)
    batches = random_batches(1, 16)
    runs = [
        algorithm.update(algorithm.create(config, OBS_DIM, ACTION_DIM, seed), batches)[0]
        for seed in (0, 0, 1)
    ]
    assert leaves_equal(runs[0], runs[1])
    assert not leaves_equal(runs[0].actor_params, runs[2].actor_params)


@pytest.mark.parametrize("algo", ALGOS)
def test_utd_updates_in_one_call_with_finite_metrics(algo):
    algorithm, config = get_algorithm(algo), _config(algo, utd=3)
    agent = algorithm.create(config, OBS_DIM, ACTION_DIM, seed=0)
    new, metrics = algorithm.update(agent, random_batches(3, 16))
    assert int(new.num_updates) == 3
    assert {"critic_loss", "actor_loss", "q_mean", "target_q_mean"} <= set(metrics)
    assert all(np.shape(v) == () and np.isfinite(float(v)) for v in metrics.values())
    for part in ("actor_params", "critic_params", "target_critic_params"):
        assert not leaves_equal(getattr(new, part), getattr(agent, part)), part


@pytest.mark.parametrize("algo", ALGOS)
def test_save_load_gives_identical_actions_and_training(algo, tmp_path):
    algorithm, config = get_algorithm(algo), _config(algo)
    agent = algorithm.create(config, OBS_DIM, ACTION_DIM, seed=0)
    for i in range(3):
        agent, _ = algorithm.update(agent, random_batches(1, 16, seed=i))
    checkpoint = save_run_checkpoint(tmp_path, 3, agent, None, {"step": 3})
    template = algorithm.create(config, OBS_DIM, ACTION_DIM, seed=123)
    loaded, step = load_agent(checkpoint, template)
    assert step == 3 and leaves_equal(loaded, agent)
    obs = np.ones(OBS_DIM, np.float32)
    for explore in (False, True):
        first, _ = agent.act(obs, jax.random.PRNGKey(7), explore)
        second, _ = loaded.act(obs, jax.random.PRNGKey(7), explore)
        np.testing.assert_array_equal(first, second)
    batches = random_batches(1, 16, seed=9)
    assert leaves_equal(algorithm.update(agent, batches)[0], algorithm.update(loaded, batches)[0])


@pytest.mark.parametrize("algo", ALGOS)
def test_update_and_policy_vmap_over_seeds(algo):
    algorithm = get_algorithm(algo)
    config = _config(algo, utd=3, **({"policy_delay": 2} if algo == "td3" else {}))
    check_seeds_vmap(algorithm.create, algorithm.update, config)

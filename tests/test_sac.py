import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qscore.agents.sac import (
    SACConfig,
    actor_loss,
    create_sac,
    policy_distribution,
    sample_policy,
    sample_tanh_gaussian,
    tanh_gaussian_log_prob,
    td_target,
    update,
)

from .helpers import (
    ACTION_DIM,
    OBS_DIM,
    constant_critics,
    random_batch,
    random_batches,
)

SAC_METRICS = {
    "critic_loss",
    "actor_loss",
    "temperature",
    "temperature_loss",
    "entropy",
    "q_mean",
    "target_q_mean",
    "actor_grad_norm",
    "critic_grad_norm",
}


@pytest.fixture
def config() -> SACConfig:
    return SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=16)


def _reference_log_prob(mean, log_std, u):
    """Change of variables in float64: log N(u; mean, std^2) - sum log(1 - tanh(u)^2).

    1 - tanh(u)^2 is written 1 / cosh(u)^2, which float64 evaluates accurately for all the
    u used here (1 - tanh(15)^2 = 3.7e-13 would lose 3 of its digits to cancellation).
    """
    mean, log_std, u = (np.asarray(x, np.float64) for x in (mean, log_std, u))
    std = np.exp(log_std)
    gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    return (gaussian - np.log(1.0 / np.cosh(u) ** 2)).sum(-1)


def test_tanh_gaussian_log_prob_matches_change_of_variables_in_float64():
    mean = np.array([[0.3, -1.2], [2.0, 0.0], [-0.5, 4.0], [0.0, -3.0]], np.float32)
    log_std = np.array([[-0.2, 0.5], [-1.0, -4.0], [1.5, 0.0], [-2.0, 1.0]], np.float32)
    # Includes |u| = 12 and 15, where float32 tanh(u) is exactly +-1 and the direct form of
    # log(1 - tanh(u)^2) is -inf.
    u = np.array([[0.1, -2.0], [2.3, 0.01], [-12.0, 5.0], [0.7, -15.0]], np.float32)
    got = np.asarray(tanh_gaussian_log_prob(mean, log_std, u), np.float64)
    np.testing.assert_allclose(got, _reference_log_prob(mean, log_std, u), rtol=1e-6, atol=1e-5)
    assert np.all(np.isfinite(got))


def test_tanh_gaussian_density_matches_a_histogram_of_samples():
    """Monte Carlo: the density of a = tanh(u) agrees with a histogram of sampled actions."""
    mean, log_std = jnp.full((400_000, 1), 0.3), jnp.full((400_000, 1), -0.2)
    actions, log_probs = sample_tanh_gaussian(mean, log_std, jax.random.PRNGKey(0))
    actions = np.asarray(actions)[:, 0]
    edges = np.linspace(-0.9, 0.9, 19)
    counts, _ = np.histogram(actions, bins=edges)
    # Probability of each bin: the density integrated over it (trapezoids, 64 per bin).
    grid = np.linspace(edges[:-1], edges[1:], 65, axis=1)  # (bins, 65)
    u = np.arctanh(grid).reshape(-1, 1).astype(np.float32)
    log_density = tanh_gaussian_log_prob(mean[: len(u)], log_std[: len(u)], u)
    density = np.exp(np.asarray(log_density, np.float64)).reshape(grid.shape)
    spacing = grid[:, 1] - grid[:, 0]
    expected = spacing * (density[:, 1:] + density[:, :-1]).sum(axis=1) / 2
    # Each bin count is binomial: allow 4 standard deviations of Monte Carlo error.
    observed = counts / len(actions)
    sigma = np.sqrt(expected * (1 - expected) / len(actions))
    assert np.all(np.abs(observed - expected) < 4 * sigma), (observed - expected) / sigma
    assert abs(expected.sum() - (np.abs(actions) < 0.9).mean()) < 0.005
    # The returned log-probabilities are those of the returned actions.
    u_samples = np.arctanh(np.clip(actions[:1000], -0.999, 0.999))[:, None]
    np.testing.assert_allclose(
        log_probs[:1000],
        tanh_gaussian_log_prob(mean[:1000], log_std[:1000], u_samples),
        rtol=1e-3,
        atol=1e-3,
    )


def test_log_std_stays_within_its_bounds(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = 1e4 * jax.random.normal(jax.random.PRNGKey(0), (256, OBS_DIM))
    _, log_std = policy_distribution(config, ACTION_DIM, agent.actor_params, obs)
    assert float(log_std.min()) >= config.log_std_min
    assert float(log_std.max()) <= config.log_std_max
    assert float(log_std.max() - log_std.min()) > 1.0  # the bounds are reached, not fixed


def test_actions_have_the_right_shape_and_bounds(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = 100.0 * jax.random.normal(jax.random.PRNGKey(0), (512, OBS_DIM))
    actions, log_probs = sample_policy(
        config, ACTION_DIM, agent.actor_params, obs, jax.random.PRNGKey(1)
    )
    assert actions.shape == (512, ACTION_DIM) and log_probs.shape == (512,)
    assert float(jnp.abs(actions).max()) <= 1.0
    assert bool(jnp.all(jnp.isfinite(log_probs)))


def test_act_is_deterministic_given_the_key(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = np.linspace(-1, 1, OBS_DIM).astype(np.float32)
    key = jax.random.PRNGKey(3)
    a1, next1 = agent.act(obs, key, explore=True)
    a2, next2 = agent.act(obs, key, explore=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(next1, next2)
    assert not np.array_equal(next1, key)
    a3, _ = agent.act(obs, next1, explore=True)
    assert not np.array_equal(a1, a3)
    # Without exploration the action is tanh(mean), whatever the key.
    greedy1, _ = agent.act(obs, key, explore=False)
    greedy2, _ = agent.act(obs, next1, explore=False)
    np.testing.assert_array_equal(greedy1, greedy2)
    mean, _ = policy_distribution(config, ACTION_DIM, agent.actor_params, obs[None])
    np.testing.assert_allclose(greedy1, np.tanh(np.asarray(mean[0])), rtol=1e-6)


def test_td_target_is_soft_and_bootstraps_unless_terminated(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    agent = agent.replace(
        target_critic_params=constant_critics(agent.critic_params, [3.0, 5.0]),
        log_temperature=jnp.log(jnp.float32(0.5)),
    )
    key = jax.random.PRNGKey(0)
    alive = random_batch(8, terminated=0.0)
    _, next_log_prob = sample_policy(config, ACTION_DIM, agent.actor_params, alive.next_obs, key)
    expected = alive.reward + config.discount * (3.0 - 0.5 * np.asarray(next_log_prob))
    np.testing.assert_allclose(td_target(agent, alive, key), expected, rtol=1e-5)
    two_steps = alive._replace(horizon=np.full(8, 2.0, np.float32))
    expected = alive.reward + config.discount**2 * (3.0 - 0.5 * np.asarray(next_log_prob))
    np.testing.assert_allclose(td_target(agent, two_steps, key), expected, rtol=1e-5)
    dead = random_batch(8, terminated=1.0)
    np.testing.assert_allclose(td_target(agent, dead, key), dead.reward, rtol=1e-6)


def test_actor_loss_sends_no_gradient_into_the_critics(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    batch = random_batch(16)

    def loss(actor_params, critic_params):
        learner = agent.replace(actor_params=actor_params, critic_params=critic_params)
        return actor_loss(learner, batch.obs, jax.random.PRNGKey(0))[0]

    actor_grads, critic_grads = jax.grad(loss, argnums=(0, 1))(
        agent.actor_params, agent.critic_params
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(critic_grads))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree_util.tree_leaves(actor_grads))


@pytest.mark.parametrize(
    ("entropy_target", "direction"), [(5.0, "increases"), (-20.0, "decreases")]
)
def test_temperature_moves_toward_the_target_entropy(config, entropy_target, direction):
    """An entropy target above what the policy has (a tanh-Gaussian on [-1, 1]^2 has entropy
    at most 2 log 2 = 1.39) makes alpha grow; one far below makes it shrink."""
    config = dataclasses.replace(config, target_entropy=entropy_target, utd=10, batch_size=32)
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    temperatures = [1.0]
    for i in range(5):
        agent, metrics = update(agent, random_batches(10, 32, seed=i))
        temperatures.append(float(metrics["temperature"]))
        above_target = float(metrics["entropy"]) > entropy_target
        assert above_target == (direction == "decreases"), metrics
    steps = np.diff(temperatures)
    if direction == "increases":
        assert np.all(steps > 0), temperatures
    else:
        assert np.all(steps < 0), temperatures
    # Adam moves log_alpha by about temperature_lr per update: 50 updates, about 0.015.
    assert abs(np.log(temperatures[-1])) > 0.01, temperatures


def test_temperature_metric_is_exp_log_temperature(config):
    agent = create_sac(config, OBS_DIM, ACTION_DIM, seed=0)
    new, metrics = update(agent, random_batches(2, 16))
    assert SAC_METRICS <= set(metrics)
    np.testing.assert_allclose(metrics["temperature"], np.exp(new.log_temperature), rtol=1e-6)

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qscore.agents.td3 import (
    TD3Config,
    actor_loss,
    create_td3,
    deterministic_action,
    smoothed_target_action,
    td_target,
    update,
)

from .helpers import (
    ACTION_DIM,
    OBS_DIM,
    constant_critics,
    leaves_equal,
    random_batch,
    random_batches,
)

TD3_METRICS = {
    "critic_loss",
    "actor_loss",
    "q_mean",
    "target_q_mean",
    "critic_grad_norm",
    "actor_updated",
}


@pytest.fixture
def config() -> TD3Config:
    return TD3Config(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=16)


def test_actions_have_the_right_shape_and_bounds(config):
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = 100.0 * jax.random.normal(jax.random.PRNGKey(0), (512, OBS_DIM))
    actions = deterministic_action(config, ACTION_DIM, agent.actor_params, obs)
    assert actions.shape == (512, ACTION_DIM)
    assert float(jnp.abs(actions).max()) <= 1.0
    assert float(jnp.abs(actions).max()) > 0.99  # large inputs saturate the tanh


def test_act_is_deterministic_given_the_key_and_explores_with_gaussian_noise(config):
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = np.linspace(-1, 1, OBS_DIM).astype(np.float32)
    key = jax.random.PRNGKey(3)
    a1, next1 = agent.act(obs, key, explore=True)
    a2, next2 = agent.act(obs, key, explore=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(next1, next2)
    greedy, _ = agent.act(obs, key, explore=False)
    np.testing.assert_allclose(
        greedy,
        deterministic_action(config, ACTION_DIM, agent.actor_params, obs[None])[0],
        rtol=1e-6,
    )
    assert np.all(np.abs(greedy) < 0.5)  # far from the bounds: the noise is rarely clipped
    noise = []
    for _ in range(400):
        action, key = agent.act(obs, key, explore=True)
        noise.append(action - greedy)
        np.testing.assert_array_equal(agent.act(obs, key, explore=False)[0], greedy)
    noise = np.asarray(noise)
    assert abs(noise.mean()) < 0.02
    np.testing.assert_allclose(noise.std(axis=0), config.exploration_noise, rtol=0.12)


def test_target_actions_are_smoothed_with_clipped_noise(config):
    config = dataclasses.replace(config, target_noise=10.0, target_noise_clip=0.3)
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    next_obs = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (2048, OBS_DIM))
    clean = np.asarray(
        deterministic_action(config, ACTION_DIM, agent.target_actor_params, next_obs)
    )
    smoothed = np.asarray(smoothed_target_action(agent, next_obs, jax.random.PRNGKey(1)))
    assert np.all(np.abs(smoothed) <= 1.0)
    upper, lower = np.clip(clean + 0.3, -1, 1), np.clip(clean - 0.3, -1, 1)
    assert np.all(smoothed <= upper + 1e-6) and np.all(smoothed >= lower - 1e-6)
    # With sigma >> c nearly every noise sample is clipped to +-c (P(|noise| < c) = 2.4%).
    at_a_bound = np.isclose(smoothed, upper, atol=1e-6) | np.isclose(smoothed, lower, atol=1e-6)
    assert 0.95 < at_a_bound.mean() < 1.0


def test_td_target_bootstraps_unless_terminated(config):
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    agent = agent.replace(target_critic_params=constant_critics(agent.critic_params, [3.0, 5.0]))
    key = jax.random.PRNGKey(0)
    alive = random_batch(8, terminated=0.0)
    np.testing.assert_allclose(
        td_target(agent, alive, key), alive.reward + config.discount * 3.0, rtol=1e-6
    )
    dead = random_batch(8, terminated=1.0)
    np.testing.assert_allclose(td_target(agent, dead, key), dead.reward, rtol=1e-6)
    three_steps = alive._replace(horizon=np.full(8, 3.0, np.float32))
    np.testing.assert_allclose(
        td_target(agent, three_steps, key), alive.reward + config.discount**3 * 3.0, rtol=1e-6
    )


def test_actor_maximises_the_first_critic_only(config):
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    critics = constant_critics(agent.critic_params, [5.0, 3.0])
    obs = random_batch(8).obs
    loss, metrics = actor_loss(agent.replace(critic_params=critics), obs)
    np.testing.assert_allclose(loss, -5.0, rtol=1e-6)  # Q_1, not min_j Q_j = 3
    critic_grads = jax.grad(lambda c: actor_loss(agent.replace(critic_params=c), obs)[0])(
        agent.critic_params
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(critic_grads))


DELAYED = ("actor_params", "actor_opt_state", "target_actor_params", "target_critic_params")


def test_actor_and_targets_change_only_every_policy_delay_updates(config):
    config = dataclasses.replace(config, policy_delay=3)
    agent = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    for k in range(1, 8):
        new, metrics = update(agent, random_batches(1, 16, seed=k))
        assert int(new.num_updates) == k
        assert not leaves_equal(new.critic_params, agent.critic_params), k
        assert not leaves_equal(new.critic_opt_state, agent.critic_opt_state), k
        due = k % 3 == 0
        assert float(metrics["actor_updated"]) == float(due), k
        for name in DELAYED:
            unchanged = leaves_equal(getattr(new, name), getattr(agent, name))
            assert unchanged != due, (k, name)
        if due:
            assert float(metrics["actor_loss"]) == float(new.last_actor_loss)
            assert float(new.last_actor_loss) != float(agent.last_actor_loss)
        else:  # the last actor update's loss is carried over, bit for bit
            assert np.array_equal(new.last_actor_loss, agent.last_actor_loss), k
            assert float(metrics["actor_loss"]) == float(agent.last_actor_loss)
        agent = new


def test_utd_updates_in_one_call_match_single_updates(config):
    config = dataclasses.replace(config, policy_delay=3, utd=6)
    batches = random_batches(6, 16, seed=5)
    start = create_td3(config, OBS_DIM, ACTION_DIM, seed=0)
    scanned, metrics = update(start, batches)
    assert int(scanned.num_updates) == 6
    assert TD3_METRICS <= set(metrics)
    assert all(np.shape(v) == () and np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["actor_updated"]) == 1.0  # update 6 is the second actor update
    # Adam's step counter of the actor: exactly 2 actor steps in 6 updates.
    assert int(scanned.actor_opt_state[0].count) == 2
    single = start
    for i in range(6):
        single, _ = update(single, jax.tree_util.tree_map(lambda x, i=i: x[i : i + 1], batches))
    for a, b in zip(
        jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(single), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

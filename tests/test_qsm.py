import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from qscore.agents.common import critic_loss, q_values
from qscore.agents.qsm import (
    create_qsm,
    qsm_actor_loss,
    sample_policy,
    td_target,
    update_actor,
)
from qscore.replay import Batch

from .helpers import (
    ACTION_DIM,
    OBS_DIM,
    constant_critics,
    leaves_equal,
    random_batch,
)


def test_actor_loss_sends_no_gradient_into_the_critics(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    batch = random_batch(16)

    def loss(actor_params, critic_params):
        chain = agent.chain().replace(actor_params=actor_params, critic_params=critic_params)
        return qsm_actor_loss(chain, batch, jax.random.PRNGKey(0))[0]

    actor_grads, critic_grads = jax.grad(loss, argnums=(0, 1))(
        agent.actor_params, agent.critic_params
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(critic_grads))
    assert optax.global_norm(actor_grads) > 0


def test_actor_update_leaves_critics_untouched(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    new, _ = update_actor(agent, random_batch(16), jax.random.PRNGKey(1))
    assert leaves_equal(new.critic_params, agent.critic_params)
    assert not leaves_equal(new.actor_params, agent.actor_params)


def test_td_target_bootstraps_unless_terminated(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    agent = agent.replace(target_critic_params=constant_critics(agent.critic_params, [3.0, 5.0]))
    key = jax.random.PRNGKey(0)
    gamma = tiny_config.discount
    # Truncated (time-limit) transitions are stored as not terminated: they bootstrap from
    # the minimum of the target critics.
    alive = random_batch(8, terminated=0.0)
    np.testing.assert_allclose(td_target(agent, alive, key), alive.reward + gamma * 3.0, rtol=1e-6)
    dead = random_batch(8, terminated=1.0)
    np.testing.assert_allclose(td_target(agent, dead, key), dead.reward, rtol=1e-6)
    # An n-step sample bootstraps with gamma^m, m its number of steps.
    longer = alive._replace(horizon=np.arange(1, 9, dtype=np.float32))
    expected = longer.reward + gamma**longer.horizon * 3.0
    np.testing.assert_allclose(td_target(agent, longer, key), expected, rtol=1e-6)


def test_critic_loss_sums_over_the_ensemble(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    params = constant_critics(agent.critic_params, [1.0, 2.0])
    batch = random_batch(8)
    loss, _ = critic_loss(tiny_config, params, batch, jnp.zeros(8))
    np.testing.assert_allclose(loss, 1.0 + 4.0, rtol=1e-6)


@pytest.mark.parametrize(
    "variant",
    [
        {"q_score_scale": 1.0},
        {"q_score_target": "normalized"},
        {"q_score_target": "normalized_per_state"},
        {"q_score_target": "normalized", "bc_weight": 1.0},
        {"q_score_target": "normalized", "q_score_actions": "policy"},
    ],
    ids=["paper", "normalized", "per_state", "denoising", "policy_actions"],
)
def test_qsm_moves_actions_toward_the_argmax_of_a_fixed_quadratic_q(tiny_config, variant):
    """One-state bandit: fit the critics to Q(a) = -|a - a*|^2, freeze them, train the actor."""
    config = dataclasses.replace(tiny_config, batch_size=128, actor_lr=1e-3, **variant)
    best = jnp.array([0.6, -0.4])
    agent = create_qsm(config, 1, ACTION_DIM, seed=0)
    obs = jnp.zeros((256, 1))
    key = jax.random.PRNGKey(0)

    def fit_loss(params, actions):
        q = q_values(config, params, obs, actions)
        return ((q + ((actions - best) ** 2).sum(-1)) ** 2).mean()

    opt = optax.adam(3e-3)

    def fit_step(carry, sub):
        params, opt_state = carry
        grads = jax.grad(fit_loss)(params, jax.random.uniform(sub, (256, ACTION_DIM), minval=-1))
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    key, fit_key = jax.random.split(key)
    carry = (agent.critic_params, opt.init(agent.critic_params))
    (params, _), _ = jax.jit(lambda c, k: jax.lax.scan(fit_step, c, k))(
        carry, jax.random.split(fit_key, 600)
    )
    agent = agent.replace(critic_params=params)

    def distances(agent, key):
        """Mean distance of sampled actions to a*, and distance of their mean to a*."""
        actions = sample_policy(agent.chain(), obs, key)
        return (
            float(jnp.linalg.norm(actions - best, axis=-1).mean()),
            float(jnp.linalg.norm(actions.mean(0) - best)),
        )

    before, before_of_mean = distances(agent, jax.random.PRNGKey(1))
    obs_rows, zeros = jnp.zeros((128, 1)), jnp.zeros(128)

    def actor_step(agent, step_key):
        data_key, update_key = jax.random.split(step_key)
        replay = jax.random.uniform(data_key, (128, ACTION_DIM), minval=-1)
        batch = Batch(obs_rows, replay, zeros, obs_rows, zeros, zeros + 1)
        return update_actor(agent, batch, update_key)[0], None

    agent, _ = jax.jit(lambda a, k: jax.lax.scan(actor_step, a, k))(
        agent, jax.random.split(key, 400)
    )
    after, after_of_mean = distances(agent, jax.random.PRNGKey(1))
    # The untrained chain spreads actions over the box, centred near 0 (|a*| = 0.72).
    assert before > 1.0 and before_of_mean > 0.6
    # QSM pulls the samples' mean toward a* under every target; with the sign flipped it
    # would move to the corner (-1, 1), 1.6 away.
    assert after_of_mean < 0.4, (before_of_mean, after_of_mean)
    if variant == {"q_score_scale": 1.0}:
        # The paper's target also concentrates the samples (the normalized ones, with the
        # 5-step VP chain, keep a wider spread after this short training).
        assert after < 0.5, (before, after)


@pytest.mark.parametrize("best_of", [1, 4])
def test_frozen_policy_acts_as_the_agent_with_its_own_parameters(tiny_config, best_of):
    config = dataclasses.replace(tiny_config, best_of_n_explore=best_of, best_of_n_eval=best_of)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = np.linspace(-1, 1, OBS_DIM).astype(np.float32)

    def acts(act):
        actions = []
        for explore in (False, True):
            for seed in range(3):
                actions.append(np.asarray(act(obs, jax.random.PRNGKey(seed), explore)[0]))
        return np.stack(actions)

    # the frozen policy (theta-only terms computed once) gives what policy computes afresh
    np.testing.assert_array_equal(acts(agent.frozen().act), acts(agent.policy))
    np.testing.assert_array_equal(acts(agent.act), acts(agent.policy))
    assert not agent.__dict__.keys() - {f.name for f in dataclasses.fields(agent)}  # no cache
    # another agent's frozen policy uses its own parameters
    moved = jax.tree_util.tree_map(lambda p: p + 0.3, agent.actor_params)
    other = agent.replace(actor_params=moved)
    np.testing.assert_array_equal(acts(other.frozen().act), acts(other.policy))
    assert not np.array_equal(acts(other.frozen().act), acts(agent.frozen().act))

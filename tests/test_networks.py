import jax
import jax.numpy as jnp
import numpy as np

from qscore.networks import CriticEnsemble, ScoreNet, chain_denoiser, denoiser_tables, mish


def test_mish_matches_its_textbook_form_and_has_finite_gradients():
    x = jnp.linspace(-60.0, 60.0, 100_001)
    reference = x * jnp.tanh(jax.nn.softplus(x))
    np.testing.assert_allclose(mish(x), reference, atol=2e-5)
    grads = jax.vmap(jax.grad(mish))(jnp.array([-1e30, -50.0, 0.0, 50.0, 1e30]))
    assert bool(jnp.all(jnp.isfinite(grads)))
    np.testing.assert_allclose(grads[2], 0.6, atol=1e-6)  # mish'(0) = tanh(log 2) = 0.6


def test_score_net_shares_one_time_row_across_the_batch():
    net = ScoreNet(action_dim=2, hidden=(16, 16), time_features=8, time_hidden=(8, 8))
    obs, action = jnp.ones((5, 3)), jnp.linspace(-1, 1, 10).reshape(5, 2)
    params = net.init(jax.random.PRNGKey(0), obs, action, jnp.zeros((5, 1), jnp.int32))
    shared = net.apply(params, obs, action, jnp.full((1, 1), 3))
    per_row = net.apply(params, obs, action, jnp.full((5, 1), 3))
    assert shared.shape == (5, 2)
    np.testing.assert_allclose(shared, per_row, rtol=1e-6)
    other_step = net.apply(params, obs, action, jnp.full((1, 1), 1))
    assert not np.allclose(shared, other_step)  # the step index matters


def test_chain_denoiser_is_the_score_net_at_every_step():
    net = ScoreNet(action_dim=2, hidden=(16, 16, 16), time_features=8, time_hidden=(8, 8))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    action = jax.random.uniform(jax.random.PRNGKey(2), (5, 2), minval=-1)
    params = net.init(jax.random.PRNGKey(0), obs, action, jnp.zeros((5, 1), jnp.int32))
    denoise = chain_denoiser(net, params["params"], obs, num_steps=4)
    for k in range(4):
        step = jnp.full((1, 1), k)
        np.testing.assert_allclose(
            denoise(action, step), net.apply(params, obs, action, step), rtol=1e-5, atol=1e-6
        )


def test_chain_denoiser_with_precomputed_tables_is_the_same_function():
    net = ScoreNet(action_dim=2, hidden=(16, 16), time_features=8, time_hidden=(8, 8))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    action = jax.random.uniform(jax.random.PRNGKey(2), (5, 2), minval=-1)
    params = net.init(jax.random.PRNGKey(0), obs, action, jnp.zeros((5, 1), jnp.int32))["params"]
    tables = denoiser_tables(net, params, num_steps=4)
    assert tables.action_kernel.shape == (2, 16) and tables.obs_kernel.shape == (3, 16)
    assert tables.time_terms.shape == (4, 16)
    inline = chain_denoiser(net, params, obs, num_steps=4)
    given = chain_denoiser(net, params, obs, num_steps=4, tables=tables)
    for k in range(4):
        step = jnp.full((1, 1), k)
        np.testing.assert_array_equal(given(action, step), inline(action, step))


def test_critic_ensemble_members_are_independent():
    net = CriticEnsemble(hidden=(16, 16), num=2)
    obs, action = jnp.ones((4, 3)), jnp.zeros((4, 2))
    params = net.init(jax.random.PRNGKey(0), obs, action)
    q = net.apply(params, obs, action)
    assert q.shape == (2, 4)
    assert not np.allclose(q[0], q[1])

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qscore.diffusion import (
    make_schedule,
    noise_actions,
    sample_chain,
    uniform_prior_eps,
    vp_betas,
)


@pytest.mark.parametrize("kind", ["vp", "cosine", "linear"])
@pytest.mark.parametrize("steps", [1, 2, 5, 20, 100])
def test_alpha_bar_strictly_decreasing_in_unit_interval(kind, steps):
    schedule = make_schedule(kind, steps)
    alpha_bars = np.asarray(schedule.alpha_bars)
    assert alpha_bars.shape == (steps,)
    assert np.all(alpha_bars > 0) and np.all(alpha_bars < 1)
    assert np.all(np.diff(alpha_bars) < 0)
    np.testing.assert_allclose(schedule.alphas, 1 - schedule.betas, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alpha_bars, np.cumprod(schedule.alphas), rtol=1e-5)


def test_vp_schedule_matches_the_integrated_rate():
    # T = 5, b in [0.1, 10]: alpha_1 = exp(-0.02 - 0.198), alpha_5 = exp(-0.02 - 1.782).
    alphas = 1 - vp_betas(5, 0.1, 10.0)
    np.testing.assert_allclose(alphas[0], np.exp(-0.218), rtol=1e-9)
    np.testing.assert_allclose(alphas[-1], np.exp(-1.802), rtol=1e-9)


def test_linear_schedule_spaces_betas_evenly():
    betas = np.asarray(make_schedule("linear", 5, linear_start=0.01, linear_end=0.05).betas)
    np.testing.assert_allclose(betas, [0.01, 0.02, 0.03, 0.04, 0.05], rtol=1e-6)


def test_forward_noising_interpolates_with_alpha_bar():
    schedule = make_schedule("vp", 5)
    actions = jnp.full((5, 2), 0.5)
    noise = jnp.ones((5, 2))
    noisy = noise_actions(schedule, actions, jnp.arange(5), noise)
    alpha_bars = np.asarray(schedule.alpha_bars)[:, None]
    expected = np.sqrt(alpha_bars) * 0.5 + np.sqrt(1 - alpha_bars)
    np.testing.assert_allclose(noisy, np.broadcast_to(expected, (5, 2)), rtol=1e-6)


def _zero_denoiser(actions, steps):
    return jnp.zeros_like(actions)


def _huge_denoiser(actions, steps):
    return -1e3 * jnp.ones_like(actions)


def test_sampler_shape_and_clipping():
    schedule = make_schedule("vp", 5)
    key = jax.random.PRNGKey(0)
    clipped = sample_chain(_huge_denoiser, schedule, key, (64, 3), clip=True)
    assert clipped.shape == (64, 3)
    assert float(jnp.max(jnp.abs(clipped))) <= 1.0
    np.testing.assert_allclose(clipped, 1.0)  # a huge negative eps drives a_k to the upper bound
    free = sample_chain(_zero_denoiser, schedule, key, (64, 3), clip=False)
    assert float(jnp.max(jnp.abs(free))) > 1.0  # unclipped Gaussian noise leaves the box


def test_sampler_is_a_function_of_its_key():
    schedule = make_schedule("vp", 5)
    first = sample_chain(_zero_denoiser, schedule, jax.random.PRNGKey(1), (8, 2))
    again = sample_chain(_zero_denoiser, schedule, jax.random.PRNGKey(1), (8, 2))
    other = sample_chain(_zero_denoiser, schedule, jax.random.PRNGKey(2), (8, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_last_reverse_step_adds_no_noise():
    # With T = 1 the only step is k = 0, which is deterministic given a_T.
    schedule = make_schedule("vp", 1)
    key = jax.random.PRNGKey(3)
    a = sample_chain(_zero_denoiser, schedule, key, (4, 2), clip=False)
    a_T = jax.random.normal(jax.random.split(key)[0], (4, 2))
    np.testing.assert_allclose(a, a_T / np.sqrt(schedule.alphas[0]), rtol=1e-5)


def test_uniform_prior_eps_is_the_noise_prediction_of_the_noised_box():
    # eps = -sigma_k d/da log p_k(a) for p_k = uniform on [-1, 1] convolved with the forward
    # noise: p_k(a) is proportional to Phi((a + r) / sigma) - Phi((a - r) / sigma).
    from scipy.stats import norm

    for alpha_bar in (0.8, 0.3, 0.01):
        r, sigma = np.sqrt(alpha_bar), np.sqrt(1 - alpha_bar)
        x = np.array([-3.0, -1.2, -0.5, 0.0, 0.1, 0.7, 1.0, 2.0])

        def log_p(a, r=r, sigma=sigma):
            return np.log(norm.cdf((a + r) / sigma) - norm.cdf((a - r) / sigma))

        h = 1e-5
        expected = -sigma * (log_p(x + h) - log_p(x - h)) / (2 * h)
        eps = uniform_prior_eps(jnp.asarray(x, jnp.float32)[None], jnp.asarray(alpha_bar))
        np.testing.assert_allclose(np.asarray(eps)[0], expected, rtol=2e-4, atol=1e-5)
    # Far outside the box it stays finite and points back inside (eps ~ a / sigma there).
    far = np.asarray(uniform_prior_eps(jnp.array([[40.0, -40.0]]), jnp.asarray(0.01)))
    assert np.all(np.isfinite(far)) and far[0, 0] > 30 and far[0, 1] < -30


def _chain_with_tilt(temperature, prior):
    """Chain samples for a constant Q-score g = (1, -0.5) (a linear Q), normalized target
    -sigma_k g / (lambda mean|g|), with or without the uniform prior's noise prediction."""
    schedule = make_schedule("vp", 5)
    g = jnp.array([1.0, -0.5])

    def denoise(actions, steps):
        alpha_bar = schedule.alpha_bars[steps[0, 0]]
        eps = jnp.broadcast_to(-jnp.sqrt(1 - alpha_bar) * g / (temperature * 0.75), actions.shape)
        return eps + uniform_prior_eps(actions, alpha_bar) if prior else eps

    return np.asarray(sample_chain(denoise, schedule, jax.random.PRNGKey(1), (4000, 2)))


def test_uniform_prior_keeps_the_chain_inside_the_box_and_orders_it_by_temperature():
    at_bound = lambda a: (np.abs(a) > 1 - 1e-3).mean()  # noqa: E731
    # No Q at all: the prior alone spreads samples over the box, none at its faces, where a
    # denoiser that predicts 0 amplifies the start noise into the bounds.
    alone = _chain_with_tilt(np.inf, prior=True)
    assert at_bound(alone) == 0.0 and np.all(alone.std(axis=0) > 0.35)
    assert at_bound(_chain_with_tilt(np.inf, prior=False)) > 0.5
    # With a linear Q, a high temperature keeps samples off the faces (without the prior,
    # most sit on them), and the spread falls as lambda falls, towards the corner argmax Q.
    assert at_bound(_chain_with_tilt(3.0, prior=True)) == 0.0
    assert at_bound(_chain_with_tilt(3.0, prior=False)) > 0.5
    spreads = [_chain_with_tilt(t, prior=True).std(axis=0).mean() for t in (3.0, 1.0, 0.3)]
    assert spreads[0] > spreads[1] > spreads[2]
    means = _chain_with_tilt(1.0, prior=True).mean(axis=0)
    assert means[0] > 0.5 and means[1] < -0.3

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qscore.diffusion import make_schedule, noise_actions, sample_chain, vp_betas


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

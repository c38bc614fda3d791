"""The named QSM variants: Q-score targets, target critics, best-of-N, layer-normalised
critics and the logged policy diagnostics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qscore.agents.common import q_values
from qscore.agents.qsm import (
    best_of_n,
    create_qsm,
    diagnose,
    pessimistic_value,
    q_score_target,
    sample_policy,
    td_target,
    update,
    update_actor,
)

from .helpers import (
    ACTION_DIM,
    OBS_DIM,
    constant_critics,
    leaves_equal,
    random_batch,
    random_batches,
)


def _targets(config, g, sigma, noise):
    return np.asarray(q_score_target(config, jnp.asarray(g), jnp.asarray(sigma), noise))


def test_scaled_target_is_the_papers(tiny_config):
    g = np.random.default_rng(0).normal(size=(8, ACTION_DIM)).astype(np.float32)
    config = dataclasses.replace(tiny_config, q_score_scale=50.0)
    noise = jnp.ones_like(g)
    np.testing.assert_allclose(_targets(config, g, np.ones((8, 1)), noise), -50.0 * g, rtol=1e-6)


@pytest.mark.parametrize("kind", ["normalized", "normalized_per_state"])
def test_normalized_targets_ignore_the_scale_of_q(tiny_config, kind):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(8, ACTION_DIM)).astype(np.float32) * rng.uniform(0.1, 3, (8, 1))
    sigma = rng.uniform(0.1, 1.0, (8, 1)).astype(np.float32)
    config = dataclasses.replace(tiny_config, q_score_target=kind, q_score_temperature=0.1)
    noise = jnp.zeros_like(g)
    base = _targets(config, g, sigma, noise)
    for scale in (0.1, 10.0, 1000.0):
        np.testing.assert_allclose(_targets(config, scale * g, sigma, noise), base, rtol=1e-4)
    # The target points down the Q-gradient and scales with sigma_k / lambda.
    assert np.all(np.sign(base) == -np.sign(g))
    magnitude = np.abs(base / sigma)
    if kind == "normalized":
        np.testing.assert_allclose(magnitude.mean(), 10.0, rtol=1e-4)
    else:
        np.testing.assert_allclose(magnitude.mean(axis=1), 10.0, rtol=1e-4)


def test_bc_weight_adds_the_forward_noise_and_q_score_weight_scales_the_q_score(tiny_config):
    g = np.random.default_rng(2).normal(size=(8, ACTION_DIM)).astype(np.float32)
    noise = np.random.default_rng(3).normal(size=(8, ACTION_DIM)).astype(np.float32)
    plain = dataclasses.replace(tiny_config, q_score_target="normalized")
    sigma = np.full((8, 1), 0.5, np.float32)
    plain_target = _targets(plain, g, sigma, noise)
    for q_weight, bc_weight in ((1.0, 1.0), (0.5, 2.0), (0.0, 1.0)):
        mixed = dataclasses.replace(plain, q_score_weight=q_weight, bc_weight=bc_weight)
        np.testing.assert_allclose(
            _targets(mixed, g, sigma, noise),
            q_weight * plain_target + bc_weight * noise,
            rtol=1e-5,
            atol=1e-6,
        )


def test_q_score_can_come_from_the_target_critics(tiny_config):
    flagged = dataclasses.replace(tiny_config, q_score_from_target_critics=True)
    agent = create_qsm(flagged, OBS_DIM, ACTION_DIM, seed=0)
    target = create_qsm(flagged, OBS_DIM, ACTION_DIM, seed=1).critic_params
    agent = agent.replace(target_critic_params=target)
    batch, key = random_batch(16), jax.random.PRNGKey(0)
    from_target, _ = update_actor(agent, batch, key)
    # The same step as an online-critic agent whose online critics are those targets...
    swapped = agent.replace(config=tiny_config, critic_params=target)
    expected, _ = update_actor(swapped, batch, key)
    assert leaves_equal(from_target.actor_params, expected.actor_params)
    # ...and not the step the online critics give.
    online, _ = update_actor(agent.replace(config=tiny_config), batch, key)
    assert not leaves_equal(from_target.actor_params, online.actor_params)


def test_best_of_n_picks_the_highest_q_sample(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    obs = jnp.asarray(np.random.default_rng(4).normal(size=(3, OBS_DIM)), jnp.float32)
    key, n = jax.random.PRNGKey(5), 6
    chosen = best_of_n(agent.chain(), obs, key, n)
    repeated = jnp.repeat(obs, n, axis=0)
    candidates = sample_policy(agent.chain(), repeated, key)
    q = q_values(tiny_config, agent.critic_params, repeated, candidates).min(0).reshape(3, n)
    expected = candidates.reshape(3, n, ACTION_DIM)[np.arange(3), np.argmax(q, axis=1)]
    np.testing.assert_allclose(chosen, expected, rtol=1e-6)


def _noised_next_actions(agent, next_obs, key):
    """The next actions a' of td_target, rebuilt: chain samples plus clipped target noise."""
    config = agent.config
    chain_key, noise_key = jax.random.split(key)
    actions = sample_policy(agent.chain(), next_obs, chain_key)
    noise = jnp.clip(
        config.target_noise * jax.random.normal(noise_key, actions.shape),
        -config.target_noise_clip,
        config.target_noise_clip,
    )
    return jnp.clip(actions + noise, -1.0, 1.0)


def test_best_of_n_target_takes_the_max_over_noised_samples(tiny_config):
    config = dataclasses.replace(tiny_config, best_of_n_target=8)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    key = jax.random.PRNGKey(3)
    alive = random_batch(64, terminated=0.0)
    best = td_target(agent, alive, key)
    repeated = jnp.repeat(alive.next_obs, 8, axis=0)
    candidates = _noised_next_actions(agent, repeated, key)
    q = q_values(config, agent.target_critic_params, repeated, candidates).min(0).reshape(64, 8)
    expected = alive.reward + config.discount * q.max(axis=1)
    np.testing.assert_allclose(best, expected, rtol=1e-5)
    # Above the paper's single-sample target on average (max of 8 draws against one draw).
    single = td_target(agent.replace(config=tiny_config), alive, key)
    assert float(jnp.mean(best - single)) > 0.0
    # Terminated transitions still do not bootstrap.
    dead = random_batch(64, terminated=1.0)
    np.testing.assert_allclose(td_target(agent, dead, key), dead.reward, rtol=1e-6)


def test_disagreement_penalty_lowers_the_target_where_critics_disagree(tiny_config):
    q = jnp.asarray([[1.0, 2.0, 5.0], [1.0, 4.0, -1.0]])
    np.testing.assert_allclose(pessimistic_value(q, 0.0), [1.0, 2.0, -1.0])
    # Twin critics: std_j = |Q_1 - Q_2| / 2, so beta = 1 subtracts half their gap again.
    np.testing.assert_allclose(pessimistic_value(q, 1.0), [1.0, 1.0, -4.0])
    np.testing.assert_allclose(pessimistic_value(q, 2.0), [1.0, 0.0, -7.0])
    # beta < 0 is optimism: beta = -1 gives the twins' mean, -0.5 the midpoint of min and mean.
    np.testing.assert_allclose(pessimistic_value(q, -1.0), [1.0, 3.0, 2.0])
    np.testing.assert_allclose(pessimistic_value(q, -0.5), [1.0, 2.5, 0.5])
    # In the TD target: lower by gamma * beta * std_j wherever the next state bootstraps.
    config = dataclasses.replace(tiny_config, td_disagreement_penalty=1.5)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    key = jax.random.PRNGKey(7)
    alive = random_batch(64, terminated=0.0)
    plain = td_target(agent.replace(config=tiny_config), alive, key)
    pessimistic = td_target(agent, alive, key)
    next_action = _noised_next_actions(agent, alive.next_obs, key)
    spread = q_values(config, agent.target_critic_params, alive.next_obs, next_action).std(0)
    assert float(spread.min()) > 0.0
    np.testing.assert_allclose(
        pessimistic, plain - config.discount * 1.5 * spread, rtol=1e-5, atol=1e-6
    )
    dead = random_batch(64, terminated=1.0)
    np.testing.assert_allclose(td_target(agent, dead, key), dead.reward, rtol=1e-6)


def test_best_of_n_actions_come_from_the_policy_api(tiny_config):
    config = dataclasses.replace(tiny_config, best_of_n_eval=4, best_of_n_explore=2)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    obs = np.zeros(OBS_DIM, np.float32)
    for explore in (False, True):
        action, _ = agent.act(obs, jax.random.PRNGKey(0), explore)
        assert action.shape == (ACTION_DIM,) and np.all(np.abs(action) <= 1.0)


def test_layer_normalised_critics_train(tiny_config):
    config = dataclasses.replace(tiny_config, critic_layer_norm=True)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    names = jax.tree_util.tree_flatten_with_path(agent.critic_params)[0]
    assert any("LayerNorm" in jax.tree_util.keystr(path) for path, _ in names)
    new, metrics = update(agent, random_batches(2, 16))
    assert np.isfinite(float(metrics["critic_loss"]))
    assert not np.allclose(
        jax.tree_util.tree_leaves(new.critic_params)[0],
        jax.tree_util.tree_leaves(agent.critic_params)[0],
    )


def test_diagnostics_measure_spread_and_bound_share(tiny_config):
    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    obs = jnp.zeros((4, OBS_DIM))
    metrics = diagnose(agent, obs, jax.random.PRNGKey(0), samples_per_state=64)
    # The untrained chain (VP, T = 5) amplifies its start noise about 12-fold, so most
    # clipped coordinates sit at the bounds and the spread is near that of a fair coin on +-1.
    assert 0.5 < float(metrics["action_at_bound"]) <= 1.0
    assert 0.6 < float(metrics["action_spread"]) <= 1.0
    # A denoiser predicting a huge negative noise sends every sample to the upper bound.
    params = jax.tree_util.tree_map(jnp.zeros_like, agent.actor_params)
    params["MLP_1"]["Dense_2"]["bias"] = jnp.full((ACTION_DIM,), -1e3)
    pinned = diagnose(agent.replace(actor_params=params), obs, jax.random.PRNGKey(0), 64)
    assert float(pinned["action_spread"]) == 0.0
    assert float(pinned["action_at_bound"]) == 1.0


def _tuned(config, target, lr=0.5):
    return dataclasses.replace(
        config,
        q_score_target="normalized",
        q_score_temperature=0.6,
        target_action_spread=target,
        temperature_lr=lr,
        spread_states=8,
    )


def test_temperature_is_fixed_without_a_target_spread(tiny_config):
    config = dataclasses.replace(tiny_config, q_score_target="normalized", q_score_temperature=0.6)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    new, metrics = update(agent, random_batches(3, 16))
    assert float(new.temperature) == float(agent.temperature) == np.float32(0.6)
    np.testing.assert_allclose(float(metrics["q_score_temperature"]), 0.6, rtol=1e-6)
    assert "tuning_spread" not in metrics


def test_temperature_steps_towards_the_target_spread(tiny_config):
    # The untrained chain is wide (spread about 0.7): a narrow target lowers lambda by
    # lr * log(spread / target), the measured spread logged as tuning_spread.
    agent = create_qsm(_tuned(tiny_config, 0.1), OBS_DIM, ACTION_DIM, seed=0)
    new, metrics = update(agent, random_batches(1, 16))
    spread = float(metrics["tuning_spread"])
    assert spread > 0.3
    expected = np.log(0.6) - 0.5 * (np.log(spread) - np.log(0.1))
    np.testing.assert_allclose(np.log(float(new.temperature)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["q_score_temperature"]), np.exp(expected), rtol=1e-5)
    # A wider target than the measured spread raises lambda instead.
    wider, _ = update(
        create_qsm(_tuned(tiny_config, 0.99), OBS_DIM, ACTION_DIM, 0), random_batches(1, 16)
    )
    assert float(wider.temperature) > 0.6


def test_tuned_temperature_drives_the_target_and_stays_in_bounds(tiny_config):
    config = dataclasses.replace(_tuned(tiny_config, 0.5, lr=50.0), max_q_score_temperature=2.0)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    # A denoiser pinned at the upper bound has spread 0 < 0.5: lambda rises to its bound.
    params = jax.tree_util.tree_map(jnp.zeros_like, agent.actor_params)
    params["MLP_1"]["Dense_2"]["bias"] = jnp.full((ACTION_DIM,), -1e3)
    pinned = agent.replace(actor_params=params)
    new, metrics = update(pinned, random_batches(1, 16))
    assert float(metrics["tuning_spread"]) < 1e-3
    np.testing.assert_allclose(float(metrics["q_score_temperature"]), 2.0, rtol=1e-5)
    # The actor's next target uses the tuned lambda: eps* shrinks as lambda grows.
    g = np.random.default_rng(5).normal(size=(8, ACTION_DIM)).astype(np.float32)
    sigma, noise = jnp.ones((8, 1)), jnp.zeros_like(g)
    at_start = q_score_target(config, g, sigma, noise, agent.temperature)
    tuned = q_score_target(config, g, sigma, noise, new.temperature)
    np.testing.assert_allclose(np.asarray(tuned) * 2.0, np.asarray(at_start) * 0.6, rtol=1e-5)


@pytest.mark.parametrize("prior", ["none", "uniform"])
def test_action_prior_teaches_the_denoiser_to_contract_its_noise(tiny_config, prior):
    # With critics that are flat in the action (g = 0), the Q part of the target is 0: the
    # paper's denoiser learns to predict 0, and its chain amplifies the start noise into
    # the bounds; with the uniform prior it learns the box's noise prediction instead.
    config = dataclasses.replace(
        tiny_config, q_score_target="normalized", action_prior=prior, actor_lr=3e-3
    )
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    agent = agent.replace(critic_params=constant_critics(agent.critic_params, [1.0, 2.0]))
    batch = random_batch(256)._replace(obs=np.zeros((256, OBS_DIM), np.float32))

    def step(agent, key):
        return update_actor(agent, batch, key)[0], None

    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    trained, _ = jax.jit(lambda a: jax.lax.scan(step, a, keys))(agent)
    metrics = diagnose(trained, jnp.zeros((4, OBS_DIM)), jax.random.PRNGKey(2), 256)
    if prior == "uniform":
        assert float(metrics["action_at_bound"]) < 0.1
        assert 0.2 < float(metrics["action_spread"]) < 0.577
    else:
        assert float(metrics["action_at_bound"]) > 0.5


@pytest.mark.parametrize("actions", ["replay", "policy"])
def test_q_score_actions_choose_what_the_actor_loss_noises(tiny_config, actions):
    # The paper's actor loss depends on the batch's replay actions; with actions = policy it
    # noises fresh chain samples at the batch's states, so the replay actions do not matter.
    config = dataclasses.replace(tiny_config, q_score_actions=actions)
    agent = create_qsm(config, OBS_DIM, ACTION_DIM, seed=0)
    batch = random_batch(32)
    moved = batch._replace(action=-batch.action)
    key = jax.random.PRNGKey(3)
    first, _ = update_actor(agent, batch, key)
    second, _ = update_actor(agent, moved, key)
    same = leaves_equal(first.actor_params, second.actor_params)
    assert same == (actions == "policy")
    assert not leaves_equal(first.actor_params, agent.actor_params)


def test_clean_q_scores_are_taken_before_noising_and_scaled_per_level(tiny_config, monkeypatch):
    """``q_score_at`` = ``clean`` takes g at the replay action a_0, not at a_k, and scales
    the Q-score part of the target by 1/sqrt(alpha_bar_k)."""
    from qscore.agents import qsm

    agent = create_qsm(tiny_config, OBS_DIM, ACTION_DIM, seed=0)
    batch = random_batch(16)
    seen = []
    real = qsm.q_score

    def spy(config, critic_params, obs, action):
        seen.append(np.asarray(action))
        return real(config, critic_params, obs, action)

    monkeypatch.setattr(qsm, "q_score", spy)
    for where in ("noisy", "clean"):
        config = dataclasses.replace(tiny_config, q_score_at=where)
        qsm.qsm_actor_loss(agent.chain().replace(config=config), batch, jax.random.PRNGKey(0))
        at_replay = np.array_equal(seen[-1], batch.action)
        assert at_replay == (where == "clean")
    g = np.random.default_rng(1).normal(size=(8, ACTION_DIM)).astype(np.float32)
    sigma = np.full((8, 1), 0.5, np.float32)
    config = dataclasses.replace(tiny_config, q_score_target="normalized")
    plain = q_score_target(config, g, sigma, None)
    scaled = q_score_target(config, g, sigma, None, level_scale=jnp.full((8, 1), 3.0))
    np.testing.assert_allclose(scaled, 3.0 * plain, rtol=1e-6)

"""The generic critic options (:class:`qscore.config.CriticOptions`) act the same way in every
algorithm, so that SAC and TD3 can be given exactly the critic improvements QSM gets."""

import dataclasses

import jax
import numpy as np
import pytest

from qscore.agents import get_algorithm
from qscore.agents.qsm import td_target as qsm_td_target
from qscore.agents.sac import td_target as sac_td_target
from qscore.agents.td3 import td_target as td3_td_target
from qscore.config import PRESETS, ROBUST_CRITIC, ROBUST_QSM, CriticOptions, make_config

from .helpers import ACTION_DIM, OBS_DIM, constant_critics, random_batch, random_batches

TINY_NETS = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 16}
TD_TARGETS = {"qsm": qsm_td_target, "sac": sac_td_target, "td3": td3_td_target}
ALGOS = ("qsm", "sac", "td3")


def tiny(algo: str, **fields):
    extra = {"time_features": 8, "time_hidden": (16, 16)} if algo == "qsm" else {}
    return make_config("fast", {**TINY_NETS, **extra, **fields}, algo=algo).agent


@pytest.mark.parametrize("algo", ALGOS)
def test_reward_normalization_makes_updates_scale_free(algo):
    algorithm = get_algorithm(algo)
    config = tiny(algo, normalize_rewards=True)
    batches = random_batches(3, 16)
    rms = float(np.sqrt(np.mean(batches.reward[0] ** 2)))
    agents = {}
    for factor in (1.0, 10.0):
        scaled = batches._replace(reward=batches.reward * factor)
        agent, metrics = algorithm.update(algorithm.create(config, OBS_DIM, ACTION_DIM, 0), scaled)
        assert float(agent.reward_scale) == pytest.approx(factor * rms, rel=1e-5)
        assert float(metrics["reward_scale"]) == float(agent.reward_scale)
        again, _ = algorithm.update(agent, scaled._replace(reward=scaled.reward * 7.0))
        assert float(again.reward_scale) == float(agent.reward_scale)  # fixed after the first
        agents[factor] = agent
    for a, b in zip(
        jax.tree_util.tree_leaves(agents[1.0].critic_params),
        jax.tree_util.tree_leaves(agents[10.0].critic_params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    plain, _ = algorithm.update(algorithm.create(tiny(algo), OBS_DIM, ACTION_DIM, 0), batches)
    assert float(plain.reward_scale) == 1.0


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("penalty", [1.0, -0.5])
def test_disagreement_penalty_moves_the_td_target_by_beta_std(algo, penalty):
    """Twin target critics answering 1 and 3 (std 1): the target moves by -gamma beta."""
    batch = random_batch(8)
    key = jax.random.PRNGKey(0)
    targets = {}
    for beta in (0.0, penalty):
        config = tiny(algo, td_disagreement_penalty=beta)
        agent = get_algorithm(algo).create(config, OBS_DIM, ACTION_DIM, 0)
        agent = agent.replace(target_critic_params=constant_critics(agent.critic_params, [1, 3]))
        targets[beta] = np.asarray(TD_TARGETS[algo](agent, batch, key))
    np.testing.assert_allclose(targets[penalty] - targets[0.0], -0.99 * penalty, atol=1e-5)


@pytest.mark.parametrize("algo", ALGOS)
def test_layer_normalised_critics_in_every_algorithm(algo):
    def has_layer_norm(params) -> bool:
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        return any("LayerNorm" in jax.tree_util.keystr(path) for path, _ in paths)

    for layer_norm in (False, True):
        config = tiny(algo, critic_layer_norm=layer_norm)
        agent = get_algorithm(algo).create(config, OBS_DIM, ACTION_DIM, 0)
        assert has_layer_norm(agent.critic_params) == layer_norm
        updated, metrics = get_algorithm(algo).update(agent, random_batches(2, 16))
        assert np.isfinite(float(metrics["critic_loss"]))


def test_robust_baselines_get_exactly_qsms_generic_critic_options():
    generic = {f.name for f in dataclasses.fields(CriticOptions)}
    assert set(ROBUST_CRITIC) == generic
    assert {k: ROBUST_QSM[k] for k in generic} == ROBUST_CRITIC
    for algo in ("sac", "td3"):
        assert PRESETS[algo]["robust"] == ROBUST_CRITIC
        config = make_config("robust", algo=algo).agent
        assert {name: getattr(config, name) for name in generic} == ROBUST_CRITIC

"""The device step: the fused call and the pipelined pair do the same work as its parts."""

import dataclasses

import jax
import numpy as np
import pytest

from qscore import engine
from qscore.agents.qsm import create_qsm, update
from qscore.replay import Transition, insert

from .helpers import ACTION_DIM, OBS_DIM, leaves_equal

SEEDS = [3, 4]


def _filled_state(config) -> engine.DeviceState:
    """Two seeds' agents with 40 random rows in each buffer."""
    agents = [create_qsm(config, OBS_DIM, ACTION_DIM, seed) for seed in SEEDS]
    state = engine.create_state(agents, SEEDS, (OBS_DIM, ACTION_DIM), 64)
    for row in range(40):
        state = state.replace(replays=jax.vmap(insert)(state.replays, *_transitions(row)))
    return state


def _transitions(seed: int) -> Transition:
    rng = np.random.default_rng(seed)
    n = len(SEEDS)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    return Transition(
        obs,
        rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
    )


def _close(a, b) -> bool:
    """Leaf by leaf equal up to float rounding (jitted and eager code fuse differently)."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in pairs)


def _copy(state: engine.DeviceState) -> engine.DeviceState:
    """A copy that survives the donation of ``state`` to a compiled call."""
    return jax.tree_util.tree_map(lambda leaf: np.array(leaf), state)


@pytest.fixture
def setup(tiny_config):
    config = dataclasses.replace(tiny_config, utd=2)
    state = _filled_state(config)
    return state, engine.sample_spec(config), _transitions(99)


def test_fused_step_equals_insert_then_update_then_act(setup):
    state, spec, transitions = setup
    next_obs = transitions.next_obs
    separate = _copy(state)
    separate = separate.replace(replays=jax.vmap(insert)(separate.replays, *transitions))
    separate, metrics = engine.learn(separate, update, spec)
    expected_actions, expected_keys = engine.next_actions(
        separate.agents, next_obs, separate.act_keys, ACTION_DIM, False
    )
    fused, actions, fused_metrics = engine.train_step(
        _copy(state), transitions, next_obs, update_fn=update, spec=spec, updates=True,
        warmup_action=False, action_dim=ACTION_DIM,
    )  # fmt: skip
    assert _close(fused.agents, separate.agents)
    assert leaves_equal(fused.replays, separate.replays)
    np.testing.assert_allclose(actions, expected_actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fused.act_keys, expected_keys)
    assert set(fused_metrics) == set(metrics)
    assert not _close(fused.agents, state.agents)  # the updates did change them


def test_pipelined_pair_acts_before_the_same_updates(setup):
    state, spec, transitions = setup
    next_obs = transitions.next_obs
    before = _copy(state)
    fused, _, _ = engine.train_step(
        _copy(state), transitions, next_obs, update_fn=update, spec=spec, updates=True,
        warmup_action=False, action_dim=ACTION_DIM,
    )  # fmt: skip
    piped, actions = engine.store_and_act(
        _copy(state), transitions, next_obs, warmup_action=False, action_dim=ACTION_DIM
    )
    piped, _ = engine.learn_step(piped, update_fn=update, spec=spec)
    assert _close(piped.agents, fused.agents)
    assert leaves_equal(piped.replays, fused.replays)
    # the actions come from the agents before this step's updates
    expected, _ = engine.next_actions(before.agents, next_obs, before.act_keys, ACTION_DIM, False)
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)

"""The device side of the training loop: one compiled call per environment step, all seeds.

:class:`DeviceState` holds what lives on the accelerator for every seed of a run, stacked on
a leading seed axis: the agents, their replay buffers and two PRNG keys per seed (one for
acting, one for sampling replay). :func:`train_step` takes the transitions that the
environments just produced, inserts them, runs ``utd`` updates on batches sampled inside
the call (none during warm-up), and returns the actions for the next step. The host only
passes observations, rewards and done flags in and gets actions out; training metrics stay
on the device until the loop fetches them at logging time.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from qscore.replay import Replay, Transition, create_replay, insert, sample


class SampleSpec(NamedTuple):
    """How the update batches are drawn from replay (static: part of the compiled call)."""

    utd: int
    batch_size: int
    n_step: int
    discount: float
    n_step_fraction: float


def sample_spec(agent_config: Any) -> SampleSpec:
    """The replay sampling an algorithm config asks for (every config has these fields)."""
    c = agent_config
    return SampleSpec(c.utd, c.batch_size, c.n_step, c.discount, c.n_step_fraction)


class DeviceState(struct.PyTreeNode):
    """Every seed's agent, replay buffer and keys, stacked on a leading seed axis."""

    agents: Any
    replays: Replay
    act_keys: jax.Array
    """(seeds, 2): the key of the next action of each seed (warm-up or policy)."""
    sample_keys: jax.Array
    """(seeds, 2): the key of the next replay sample of each seed."""


def act_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def sample_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), 4)


def create_state(
    agents: list[Any], seeds: list[int], dims: tuple[int, int], capacity: int
) -> DeviceState:
    """The device state of fresh agents (one per seed) with empty buffers."""
    return DeviceState(
        agents=stack(agents),
        replays=create_replay(*dims, capacity, seeds=len(seeds)),
        act_keys=jnp.stack([act_key(seed) for seed in seeds]),
        sample_keys=jnp.stack([sample_key(seed) for seed in seeds]),
    )


def stack(trees: list[Any]) -> Any:
    """Pytrees of the same structure stacked on a new leading (seed) axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
    """Seed ``index``'s slice of a stacked pytree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def next_actions(
    agents: Any, obs: jax.Array, keys: jax.Array, action_dim: int, warmup: bool
) -> tuple[jax.Array, jax.Array]:
    """One action per seed: uniform on [-1, 1]^d during warm-up, else the agent's
    exploration policy at ``obs``; and the seeds' next keys."""
    if warmup:
        split = jax.vmap(jax.random.split)(keys)
        draw = partial(jax.random.uniform, shape=(action_dim,), minval=-1.0, maxval=1.0)
        return jax.vmap(draw)(split[:, 1]), split[:, 0]
    return jax.vmap(lambda agent, o, k: agent.policy(o, k, True))(agents, obs, keys)


def learn(state: DeviceState, update_fn: Any, spec: SampleSpec) -> tuple[DeviceState, dict]:
    """``utd`` updates of every seed's agent on batches sampled from its own replay."""
    split = jax.vmap(jax.random.split)(state.sample_keys)
    shape = (spec.utd, spec.batch_size)

    def draw(replay: Replay, key: jax.Array):
        return sample(replay, key, shape, spec.n_step, spec.discount, spec.n_step_fraction)

    batches = jax.vmap(draw)(state.replays, split[:, 1])
    agents, metrics = jax.vmap(update_fn)(state.agents, batches)
    return state.replace(agents=agents, sample_keys=split[:, 0]), metrics


@partial(
    jax.jit,
    static_argnames=("update_fn", "spec", "updates", "warmup_action", "action_dim"),
    donate_argnames=("state",),
)
def train_step(
    state: DeviceState,
    transitions: Transition,
    next_obs: jax.Array,
    *,
    update_fn: Any,
    spec: SampleSpec,
    updates: bool,
    warmup_action: bool,
    action_dim: int,
) -> tuple[DeviceState, jax.Array, dict]:
    """The whole device work of one environment step, for every seed.

    Inserts ``transitions`` into each seed's replay, runs ``spec.utd`` updates if
    ``updates`` (past the warm-up), then returns the actions at ``next_obs`` (the
    observations the environments are in now; uniform during warm-up) and the metrics of the
    last update ({} without updates). ``state`` is donated: its buffers are updated in place.
    """
    replays = jax.vmap(insert)(state.replays, *transitions)
    state, metrics = state.replace(replays=replays), {}
    if updates:
        state, metrics = learn(state, update_fn, spec)
    actions, keys = next_actions(state.agents, next_obs, state.act_keys, action_dim, warmup_action)
    return state.replace(act_keys=keys), actions, metrics


@partial(jax.jit, static_argnames=("warmup_action", "action_dim"), donate_argnames=("state",))
def store_and_act(
    state: DeviceState,
    transitions: Transition,
    next_obs: jax.Array,
    *,
    warmup_action: bool,
    action_dim: int,
) -> tuple[DeviceState, jax.Array]:
    """The first half of a pipelined step (``--pipeline``): insert ``transitions`` and
    return the actions at ``next_obs`` from the agents as they are, before this step's
    updates. :func:`learn_step` then runs the updates while the host steps the envs."""
    replays = jax.vmap(insert)(state.replays, *transitions)
    actions, keys = next_actions(state.agents, next_obs, state.act_keys, action_dim, warmup_action)
    return state.replace(replays=replays, act_keys=keys), actions


@partial(jax.jit, static_argnames=("update_fn", "spec"), donate_argnames=("state",))
def learn_step(state: DeviceState, *, update_fn: Any, spec: SampleSpec) -> tuple:
    """The second half of a pipelined step: ``spec.utd`` updates of every seed (returns
    at once; the host goes on while the device works)."""
    return learn(state, update_fn, spec)


@partial(jax.jit, static_argnames=("warmup_action", "action_dim"))
def first_actions(
    state: DeviceState, obs: jax.Array, *, warmup_action: bool, action_dim: int
) -> tuple[DeviceState, jax.Array]:
    """The actions of a run's first step, before any transition exists."""
    actions, keys = next_actions(state.agents, obs, state.act_keys, action_dim, warmup_action)
    return state.replace(act_keys=keys), actions


@partial(jax.jit, static_argnames=("explore",))
def act_seeds(agents: Any, obs: jax.Array, keys: jax.Array, explore: bool) -> tuple:
    """One action per seed from that seed's agent and observation (evaluation)."""
    return jax.vmap(lambda agent, o, k: agent.policy(o, k, explore))(agents, obs, keys)


@jax.jit
def all_finite_seeds(agents: Any) -> jax.Array:
    """Per seed: whether every array of its agent is finite."""
    leaves = jax.tree_util.tree_leaves(agents)
    per_leaf = [jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]
    return jnp.stack(per_leaf).all(axis=0)


@partial(jax.jit, static_argnames=("diagnose_fn", "num_states"))
def diagnose_seeds(diagnose_fn: Any, state: DeviceState, keys: jax.Array, num_states: int):
    """The algorithm's policy diagnostics for every seed, at ``num_states`` replay states
    drawn with ``keys`` (one per seed)."""

    def one(agent: Any, replay: Replay, key: jax.Array) -> dict:
        state_key, diagnose_key = jax.random.split(key)
        batch = sample(replay, state_key, (num_states,))
        return diagnose_fn(agent, batch.obs, diagnose_key)

    return jax.vmap(one)(state.agents, state.replays, keys)

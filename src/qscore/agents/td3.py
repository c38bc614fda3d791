"""TD3: twin delayed deep deterministic policy gradient (Fujimoto et al. 2018, arXiv 1802.09477).

The agent follows the conventions of :mod:`qscore.agents.qsm`: an immutable pytree of
arrays whose config and action size are static, networks and optimisers rebuilt from the
config inside jitted code, and :func:`update` performing ``utd`` updates in one call.

The policy is deterministic, a = tanh(MLP(s)) in [-1, 1]. Update number k (k = 1, 2, ...,
counted over the agent's life), for a replay batch (s, a, r, s', terminated):

* critic (every update): a' = clip(pi_target(s') + clip(N(0, sigma^2), -c, c), -1, 1)
  (target policy smoothing); y = r + gamma (1 - terminated) min_j Q_target_j(s', a');
  minimise sum_j mean (Q_j(s, a) - y)^2;
* only when k is a multiple of ``policy_delay`` (as in the authors' code, the first actor
  update comes after ``policy_delay`` critic updates): one step of the actor on
  -mean Q_1(s, pi(s)) (the first critic only, as in the paper), then Polyak updates of the
  target actor and of all target critics.

The delay is a ``jax.lax.cond`` inside the compiled update: on the other updates the
actor, its optimiser state and every target network are passed through untouched
(bit-identical), and the actor's forward and backward passes are not computed at all,
which masking with ``jnp.where`` would still pay for. (Under ``jax.vmap``, e.g. several
seeds updated together, JAX turns the cond into a select: both branches run, the result is
the same.)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from qscore.agents.common import (
    bootstrap_target,
    critic_net,
    critic_optimizer,
    critic_step,
    gradient_step,
    normalize_batch_rewards,
    pessimistic_value,
    polyak,
    q_values,
    scan_updates,
)
from qscore.config import TD3Config
from qscore.networks import MLP
from qscore.replay import Batch

Params = Any
Metrics = dict[str, jax.Array]


class TD3Agent(struct.PyTreeNode):
    """The whole TD3 learner state. Immutable: updates return a new agent."""

    actor_params: Params
    """Parameters of the deterministic policy MLP (before the tanh)."""
    actor_opt_state: optax.OptState
    target_actor_params: Params
    """Polyak-averaged copy of the policy parameters, used in the TD target."""
    critic_params: Params
    """Stacked parameters of the critic ensemble."""
    critic_opt_state: optax.OptState
    target_critic_params: Params
    """Polyak-averaged copies of the critic parameters."""
    last_actor_loss: jax.Array
    """Actor loss of the most recent actor update (0 before the first one)."""
    rng: jax.Array
    num_updates: jax.Array
    """Updates (critic steps) performed so far."""
    reward_scale: jax.Array
    """Divisor of the rewards the critics learn from (1 unless ``normalize_rewards``)."""
    config: TD3Config = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)

    def policy(self, obs: jax.Array, key: jax.Array, explore: bool) -> tuple[jax.Array, jax.Array]:
        """One action for one observation, and the key to use next time (pure; vmappable).

        ``explore`` adds N(0, exploration_noise^2) noise and clips to [-1, 1].
        """
        return _select_action(self.config, self.action_dim, self.actor_params, obs, key, explore)

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool) -> tuple[np.ndarray, jax.Array]:
        """:meth:`policy` for a host observation, returning a NumPy action."""
        action, next_key = self.policy(obs, key, explore)
        return np.asarray(action), next_key

    def frozen(self) -> Any:
        """The policy for acting many times: the agent itself (nothing to precompute)."""
        return self


def actor_net(config: TD3Config, action_dim: int) -> MLP:
    return MLP(config.actor_hidden, action_dim, "relu")


def actor_optimizer(config: TD3Config) -> optax.GradientTransformation:
    return optax.adam(config.actor_lr)


def create_td3(config: TD3Config, obs_dim: int, action_dim: int, seed: int) -> TD3Agent:
    """Initialise networks, optimisers and targets from ``seed``."""
    rng, actor_key, critic_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = actor_net(config, action_dim).init(actor_key, obs)["params"]
    critic_params = critic_net(config).init(critic_key, obs, action)["params"]
    return TD3Agent(
        actor_params=actor_params,
        actor_opt_state=actor_optimizer(config).init(actor_params),
        target_actor_params=actor_params,
        critic_params=critic_params,
        critic_opt_state=critic_optimizer(config).init(critic_params),
        target_critic_params=critic_params,
        last_actor_loss=jnp.zeros((), jnp.float32),
        rng=rng,
        num_updates=jnp.zeros((), jnp.int32),
        reward_scale=jnp.ones((), jnp.float32),
        config=config,
        action_dim=action_dim,
    )


def deterministic_action(
    config: TD3Config, action_dim: int, actor_params: Params, obs: jax.Array
) -> jax.Array:
    """pi(s) = tanh(MLP(s)) for a batch of observations: shape (B, action_dim)."""
    return jnp.tanh(actor_net(config, action_dim).apply({"params": actor_params}, obs))


@partial(jax.jit, static_argnames=("config", "action_dim", "explore"))
def _select_action(
    config: TD3Config,
    action_dim: int,
    actor_params: Params,
    obs: jax.Array,
    key: jax.Array,
    explore: bool,
) -> tuple[jax.Array, jax.Array]:
    next_key, noise_key = jax.random.split(key)
    obs = jnp.asarray(obs, jnp.float32)[None]
    action = deterministic_action(config, action_dim, actor_params, obs)[0]
    if explore:
        noise = config.exploration_noise * jax.random.normal(noise_key, action.shape)
        action = jnp.clip(action + noise, -1.0, 1.0)
    return action, next_key


def smoothed_target_action(agent: TD3Agent, next_obs: jax.Array, key: jax.Array) -> jax.Array:
    """a' = clip(pi_target(s') + clip(N(0, target_noise^2), -c, c), -1, 1): target smoothing."""
    config = agent.config
    next_action = deterministic_action(
        config, agent.action_dim, agent.target_actor_params, next_obs
    )
    noise = config.target_noise * jax.random.normal(key, next_action.shape)
    noise = jnp.clip(noise, -config.target_noise_clip, config.target_noise_clip)
    return jnp.clip(next_action + noise, -1.0, 1.0)


def td_target(agent: TD3Agent, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + gamma (1 - terminated) V(s', a'), a' the smoothed target action and
    V = min_j Q_target_j - beta std_j Q_target_j (beta = ``td_disagreement_penalty``, 0 in
    the paper)."""
    config = agent.config
    next_action = smoothed_target_action(agent, batch.next_obs, key)
    next_q = pessimistic_value(
        q_values(config, agent.target_critic_params, batch.next_obs, next_action),
        config.td_disagreement_penalty,
    )
    return bootstrap_target(batch.reward, batch.terminated, config.discount, next_q, batch.horizon)


def update_critic(agent: TD3Agent, batch: Batch, key: jax.Array) -> tuple[TD3Agent, Metrics]:
    """One Adam step of the critics on the TD loss (targets are updated with the actor)."""
    return critic_step(agent, batch, td_target(agent, batch, key))


def actor_loss(agent: TD3Agent, obs: jax.Array) -> tuple[jax.Array, Metrics]:
    """-mean_batch Q_phi_1(s, pi_theta(s)): the deterministic policy gradient through the
    first critic. theta is ``agent.actor_params`` (differentiate through
    ``agent.replace(actor_params=...)``); the critics are held fixed."""
    config = agent.config
    action = deterministic_action(config, agent.action_dim, agent.actor_params, obs)
    q_first = q_values(config, jax.lax.stop_gradient(agent.critic_params), obs, action)[0]
    loss = -q_first.mean()
    return loss, {"actor_loss": loss}


def update_actor_and_targets(agent: TD3Agent, batch: Batch) -> TD3Agent:
    """The delayed part of TD3: one Adam step of the actor, then Polyak-average all targets."""
    config = agent.config

    def loss_fn(actor_params: Params) -> tuple[jax.Array, Metrics]:
        return actor_loss(agent.replace(actor_params=actor_params), batch.obs)

    params, opt_state, metrics, _ = gradient_step(
        loss_fn, actor_optimizer(config), agent.actor_params, agent.actor_opt_state
    )
    return agent.replace(
        actor_params=params,
        actor_opt_state=opt_state,
        target_actor_params=polyak(params, agent.target_actor_params, config.tau),
        target_critic_params=polyak(agent.critic_params, agent.target_critic_params, config.tau),
        last_actor_loss=metrics["actor_loss"],
    )


def update_step(agent: TD3Agent, batch: Batch) -> tuple[TD3Agent, Metrics]:
    """One TD3 update: the critic step, then (every ``policy_delay``-th update) the actor
    step and the target updates."""
    agent, batch = normalize_batch_rewards(agent, batch)
    rng, critic_key = jax.random.split(agent.rng)
    agent, metrics = update_critic(agent, batch, critic_key)
    num_updates = agent.num_updates + 1
    actor_due = num_updates % agent.config.policy_delay == 0
    agent = jax.lax.cond(
        actor_due, partial(update_actor_and_targets, batch=batch), lambda a: a, agent
    )
    agent = agent.replace(rng=rng, num_updates=num_updates)
    metrics = {
        **metrics,
        "actor_loss": agent.last_actor_loss,
        "actor_updated": actor_due.astype(jnp.float32),
        "reward_scale": agent.reward_scale,
    }
    return agent, metrics


@jax.jit
def update(agent: TD3Agent, batches: Batch) -> tuple[TD3Agent, Metrics]:
    """``utd`` consecutive updates in one compiled call; ``batches`` has a leading utd axis.

    Returns the new agent and the metrics of the last update.
    """
    return scan_updates(update_step, agent, batches)

"""Soft Actor-Critic with a learned temperature (Haarnoja et al. 2018, arXiv 1812.05905).

The agent follows the conventions of :mod:`qscore.agents.qsm`: an immutable pytree of
arrays whose config and action size are static, networks and optimisers rebuilt from the
config inside jitted code, and :func:`update` performing ``utd`` updates in one call.

The policy is a tanh-squashed Gaussian: an MLP maps s to (mu, log sigma), u ~ N(mu, sigma^2)
and a = tanh(u), so actions lie in [-1, 1]. One update, for a replay batch
(s, a, r, s', terminated), with temperature alpha = exp(log_alpha):

* critic: a' ~ pi(. | s'); y = r + gamma (1 - terminated) (min_j Q_target_j(s', a')
  - alpha log pi(a' | s')); minimise sum_j mean (Q_j(s, a) - y)^2;
* actor: a~ ~ pi(. | s) by reparameterisation; minimise mean (alpha log pi(a~ | s)
  - min_j Q_j(s, a~)) over the actor only (critics as just updated, alpha fixed);
* temperature: minimise -log_alpha * mean(log pi(a~ | s) + H_target), reusing the log pi
  of the actor step (held fixed);
* Polyak-average the target critics with rate tau.
"""

from __future__ import annotations

import math
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
from qscore.config import SACConfig
from qscore.networks import MLP
from qscore.replay import Batch

Params = Any
Metrics = dict[str, jax.Array]

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class SACAgent(struct.PyTreeNode):
    """The whole SAC learner state. Immutable: updates return a new agent."""

    actor_params: Params
    """Parameters of the policy MLP (outputs mu and the raw log sigma)."""
    actor_opt_state: optax.OptState
    critic_params: Params
    """Stacked parameters of the critic ensemble."""
    critic_opt_state: optax.OptState
    target_critic_params: Params
    """Polyak-averaged copies of the critic parameters."""
    log_temperature: jax.Array
    """log_alpha, a scalar."""
    temperature_opt_state: optax.OptState
    rng: jax.Array
    num_updates: jax.Array
    reward_scale: jax.Array
    """Divisor of the rewards the critics learn from (1 unless ``normalize_rewards``)."""
    config: SACConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)

    def policy(self, obs: jax.Array, key: jax.Array, explore: bool) -> tuple[jax.Array, jax.Array]:
        """One action for one observation, and the key to use next time (pure; vmappable).

        ``explore`` samples from the policy; otherwise the action is tanh(mu(s)).
        """
        return _select_action(self.config, self.action_dim, self.actor_params, obs, key, explore)

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool) -> tuple[np.ndarray, jax.Array]:
        """:meth:`policy` for a host observation, returning a NumPy action."""
        action, next_key = self.policy(obs, key, explore)
        return np.asarray(action), next_key

    def frozen(self) -> Any:
        """The policy for acting many times: the agent itself (nothing to precompute)."""
        return self


def actor_net(config: SACConfig, action_dim: int) -> MLP:
    return MLP(config.actor_hidden, 2 * action_dim, "relu")


def actor_optimizer(config: SACConfig) -> optax.GradientTransformation:
    return optax.adam(config.actor_lr)


def temperature_optimizer(config: SACConfig) -> optax.GradientTransformation:
    return optax.adam(config.temperature_lr)


def target_entropy(config: SACConfig, action_dim: int) -> float:
    """H_target: the configured value, or -action_dim (the paper's heuristic) when None."""
    return -float(action_dim) if config.target_entropy is None else float(config.target_entropy)


def create_sac(config: SACConfig, obs_dim: int, action_dim: int, seed: int) -> SACAgent:
    """Initialise networks, optimisers, targets and the temperature from ``seed``."""
    rng, actor_key, critic_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = actor_net(config, action_dim).init(actor_key, obs)["params"]
    critic_params = critic_net(config).init(critic_key, obs, action)["params"]
    log_temperature = jnp.asarray(math.log(config.init_temperature), jnp.float32)
    return SACAgent(
        actor_params=actor_params,
        actor_opt_state=actor_optimizer(config).init(actor_params),
        critic_params=critic_params,
        critic_opt_state=critic_optimizer(config).init(critic_params),
        target_critic_params=critic_params,
        log_temperature=log_temperature,
        temperature_opt_state=temperature_optimizer(config).init(log_temperature),
        rng=rng,
        num_updates=jnp.zeros((), jnp.int32),
        reward_scale=jnp.ones((), jnp.float32),
        config=config,
        action_dim=action_dim,
    )


def policy_distribution(
    config: SACConfig, action_dim: int, actor_params: Params, obs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(mu, log sigma) of the pre-tanh Gaussian, each of shape (B, action_dim)."""
    out = actor_net(config, action_dim).apply({"params": actor_params}, obs)
    mean, raw_log_std = jnp.split(out, 2, axis=-1)
    low, high = config.log_std_min, config.log_std_max
    log_std = low + 0.5 * (high - low) * (jnp.tanh(raw_log_std) + 1.0)
    return mean, log_std


def log_one_minus_tanh_squared(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and finite for any u.

    The direct form loses all precision once tanh(u) rounds to +-1 (|u| > 9 in float32).
    """
    return 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, pre_tanh: jax.Array) -> jax.Array:
    """log pi(a | s) of a = tanh(u), u ~ N(mean, exp(log_std)^2), given u; summed over dims.

    Change of variables: log pi(a) = log N(u; mean, sigma^2) - sum_i log(1 - tanh(u_i)^2).
    """
    z = (pre_tanh - mean) * jnp.exp(-log_std)
    gaussian = -0.5 * z**2 - log_std - _HALF_LOG_2PI
    return (gaussian - log_one_minus_tanh_squared(pre_tanh)).sum(axis=-1)


def sample_tanh_gaussian(
    mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A reparameterised sample a = tanh(mean + sigma eps) and its log-probability."""
    pre_tanh = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return jnp.tanh(pre_tanh), tanh_gaussian_log_prob(mean, log_std, pre_tanh)


def sample_policy(
    config: SACConfig, action_dim: int, actor_params: Params, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Actions a ~ pi(. | s) for a batch of observations, with their log-probabilities."""
    mean, log_std = policy_distribution(config, action_dim, actor_params, obs)
    return sample_tanh_gaussian(mean, log_std, key)


@partial(jax.jit, static_argnames=("config", "action_dim", "explore"))
def _select_action(
    config: SACConfig,
    action_dim: int,
    actor_params: Params,
    obs: jax.Array,
    key: jax.Array,
    explore: bool,
) -> tuple[jax.Array, jax.Array]:
    next_key, sample_key = jax.random.split(key)
    obs = jnp.asarray(obs, jnp.float32)[None]
    if explore:
        action = sample_policy(config, action_dim, actor_params, obs, sample_key)[0]
    else:
        action = jnp.tanh(policy_distribution(config, action_dim, actor_params, obs)[0])
    return action[0], next_key


def td_target(agent: SACAgent, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + gamma (1 - terminated) (V(s', a') - alpha log pi(a' | s')), where
    V = min_j Q_target_j - beta std_j Q_target_j (beta = ``td_disagreement_penalty``, 0 in
    the paper: the twin minimum)."""
    config = agent.config
    next_action, next_log_prob = sample_policy(
        config, agent.action_dim, agent.actor_params, batch.next_obs, key
    )
    next_q = pessimistic_value(
        q_values(config, agent.target_critic_params, batch.next_obs, next_action),
        config.td_disagreement_penalty,
    )
    temperature = jnp.exp(agent.log_temperature)
    return bootstrap_target(
        batch.reward,
        batch.terminated,
        config.discount,
        next_q - temperature * next_log_prob,
        batch.horizon,
    )


def update_critic(agent: SACAgent, batch: Batch, key: jax.Array) -> tuple[SACAgent, Metrics]:
    """One Adam step of the critics on the soft TD loss (targets are updated later)."""
    return critic_step(agent, batch, td_target(agent, batch, key))


def actor_loss(
    agent: SACAgent, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, tuple[Metrics, jax.Array]]:
    """mean(alpha log pi_theta(a~ | s) - min_j Q_phi_j(s, a~)), a~ reparameterised from
    pi_theta(. | s), alpha = exp(log_alpha).

    theta is ``agent.actor_params`` (differentiate through
    ``agent.replace(actor_params=...)``); the critics phi and alpha are held fixed. The
    auxiliary output is the metrics and the per-row log pi(a~ | s), which the temperature
    step reuses.
    """
    config = agent.config
    action, log_prob = sample_policy(config, agent.action_dim, agent.actor_params, obs, key)
    critic_params = jax.lax.stop_gradient(agent.critic_params)
    q = q_values(config, critic_params, obs, action).min(axis=0)
    temperature = jax.lax.stop_gradient(jnp.exp(agent.log_temperature))
    loss = (temperature * log_prob - q).mean()
    return loss, ({"actor_loss": loss, "entropy": -log_prob.mean()}, log_prob)


def update_actor(
    agent: SACAgent, batch: Batch, key: jax.Array
) -> tuple[SACAgent, Metrics, jax.Array]:
    """One Adam step of the policy; also returns log pi of the actions it sampled."""
    config = agent.config

    def loss_fn(actor_params: Params) -> tuple[jax.Array, tuple[Metrics, jax.Array]]:
        return actor_loss(agent.replace(actor_params=actor_params), batch.obs, key)

    params, opt_state, (metrics, log_prob), grad_norm = gradient_step(
        loss_fn, actor_optimizer(config), agent.actor_params, agent.actor_opt_state
    )
    metrics = {**metrics, "actor_grad_norm": grad_norm}
    return agent.replace(actor_params=params, actor_opt_state=opt_state), metrics, log_prob


def temperature_loss(
    log_temperature: jax.Array, log_prob: jax.Array, entropy_target: float
) -> tuple[jax.Array, Metrics]:
    """-log_alpha * mean(log pi + H_target), log pi held fixed.

    This is the log-alpha form of the paper's J(alpha) = E[-alpha (log pi + H_target)]:
    both have their minimum in the same direction (alpha shrinks while the entropy
    -log pi exceeds H_target and grows while it is below), but this one's gradient,
    -(mean log pi + H_target), does not scale with alpha, so a small alpha can still move.
    """
    gap = jax.lax.stop_gradient(log_prob + entropy_target).mean()
    loss = -log_temperature * gap
    return loss, {"temperature_loss": loss}


def update_temperature(agent: SACAgent, log_prob: jax.Array) -> tuple[SACAgent, Metrics]:
    """One Adam step of log_alpha toward the target entropy."""
    config = agent.config
    entropy_target = target_entropy(config, agent.action_dim)
    log_temperature, opt_state, metrics, _ = gradient_step(
        lambda p: temperature_loss(p, log_prob, entropy_target),
        temperature_optimizer(config),
        agent.log_temperature,
        agent.temperature_opt_state,
    )
    agent = agent.replace(log_temperature=log_temperature, temperature_opt_state=opt_state)
    return agent, {**metrics, "temperature": jnp.exp(log_temperature)}


def update_step(agent: SACAgent, batch: Batch) -> tuple[SACAgent, Metrics]:
    """One SAC update: critic step, actor step, temperature step, then the Polyak update
    (rewards divided by ``reward_scale`` under ``normalize_rewards``)."""
    agent, batch = normalize_batch_rewards(agent, batch)
    rng, critic_key, actor_key = jax.random.split(agent.rng, 3)
    agent, critic_metrics = update_critic(agent, batch, critic_key)
    agent, actor_metrics, log_prob = update_actor(agent, batch, actor_key)
    agent, temperature_metrics = update_temperature(agent, log_prob)
    agent = agent.replace(
        target_critic_params=polyak(
            agent.critic_params, agent.target_critic_params, agent.config.tau
        ),
        rng=rng,
        num_updates=agent.num_updates + 1,
    )
    metrics = {**critic_metrics, **actor_metrics, **temperature_metrics}
    return agent, {**metrics, "reward_scale": agent.reward_scale}


@jax.jit
def update(agent: SACAgent, batches: Batch) -> tuple[SACAgent, Metrics]:
    """``utd`` consecutive updates in one compiled call; ``batches`` has a leading utd axis.

    Returns the new agent and the metrics of the last update.
    """
    return scan_updates(update_step, agent, batches)

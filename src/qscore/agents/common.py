"""Pure building blocks shared by the actor-critic agents (QSM, SAC, TD3).

Every function here is stateless and jit-friendly; none knows about a particular agent.
They cover what the three learners do identically: the critic ensemble (its network,
optimiser, values and TD step toward a given target), the bootstrapped TD target, one
optimiser step on a loss, Polyak averaging of target networks, and running ``utd`` update
steps in one ``lax.scan``. The configs only need ``critic_hidden``, ``num_critics`` and
``critic_lr`` for the critic functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import optax

from qscore.networks import CriticEnsemble
from qscore.replay import Batch

Params = Any
Metrics = dict[str, jax.Array]
Agent = TypeVar("Agent")


def critic_net(config: Any) -> CriticEnsemble:
    """The critic ensemble of a config (layer-normalised with ``critic_layer_norm``)."""
    return CriticEnsemble(config.critic_hidden, config.num_critics, config.critic_layer_norm)


def critic_optimizer(config: Any) -> optax.GradientTransformation:
    return optax.adam(config.critic_lr)


def q_values(config: Any, critic_params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
    """Q_phi_j(s, a) for every critic j: shape (num_critics, B)."""
    return critic_net(config).apply({"params": critic_params}, obs, action)


def bootstrap_target(
    reward: jax.Array,
    terminated: jax.Array,
    discount: float,
    next_value: jax.Array,
    horizon: jax.Array | float = 1.0,
) -> jax.Array:
    """y = r + gamma^m (1 - terminated) V(s'), for a batch (shapes (B,)).

    m (``horizon``) is the number of steps from s to s' (1, or up to n for n-step returns,
    whose ``reward`` is then the discounted sum). Only termination stops bootstrapping;
    time-limit truncations are stored as not terminated (see :mod:`qscore.replay`).
    """
    return reward + discount**horizon * (1.0 - terminated) * next_value


def critic_td_loss(q: jax.Array, target: jax.Array) -> tuple[jax.Array, Metrics]:
    """sum_j mean_batch (Q_j(s, a) - y)^2 for ensemble values ``q`` of shape (num, B).

    The target is held fixed (stop-gradient). Returns the loss and its metrics
    ``critic_loss``, ``q_mean`` and ``q_std``.
    """
    loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_std": q.std()}


def critic_loss(
    config: Any, critic_params: Params, batch: Batch, target: jax.Array
) -> tuple[jax.Array, Metrics]:
    """sum_j mean_batch (Q_phi_j(s, a) - y)^2 with the target y held fixed."""
    return critic_td_loss(q_values(config, critic_params, batch.obs, batch.action), target)


def critic_step(agent: Agent, batch: Batch, target: jax.Array) -> tuple[Agent, Metrics]:
    """One Adam step of ``agent``'s critic ensemble toward the TD target ``target``; the agent
    needs ``config``, ``critic_params`` and ``critic_opt_state``. The target critics are left
    to the caller, whose schedules differ."""
    params, opt_state, metrics, grad_norm = gradient_step(
        lambda p: critic_loss(agent.config, p, batch, target),
        critic_optimizer(agent.config),
        agent.critic_params,
        agent.critic_opt_state,
    )
    metrics = {**metrics, "critic_grad_norm": grad_norm, "target_q_mean": target.mean()}
    return agent.replace(critic_params=params, critic_opt_state=opt_state), metrics


def gradient_step(
    loss_fn: Callable[[Params], tuple[jax.Array, Any]],
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
) -> tuple[Params, optax.OptState, Any, jax.Array]:
    """One optimiser step on ``loss_fn``, which returns ``(loss, aux)`` (aux: usually metrics).

    Returns the new parameters, the new optimiser state, ``aux`` and the global norm of the
    gradient.
    """
    grads, aux = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux, optax.global_norm(grads)


def polyak(online: Params, target: Params, tau: float) -> Params:
    """Target parameters moved toward the online ones: tau * online + (1 - tau) * target."""
    return optax.incremental_update(online, target, tau)


def scan_updates(
    update_step: Callable[[Agent, Batch], tuple[Agent, Metrics]], agent: Agent, batches: Batch
) -> tuple[Agent, Metrics]:
    """Apply ``update_step`` once per slice of the leading (utd) axis of ``batches``.

    Returns the final agent and the metrics of the last step. Meant to be called inside
    ``jax.jit`` so that all ``utd`` updates form one compiled call.
    """
    agent, metrics = jax.lax.scan(update_step, agent, batches)
    return agent, jax.tree_util.tree_map(lambda m: m[-1], metrics)


def pessimistic_value(q: jax.Array, penalty: float) -> jax.Array:
    """min_j Q_j - beta std_j Q_j over the ensemble axis of ``q`` (num_critics, B); beta is
    ``td_disagreement_penalty``, and beta = 0 gives the plain minimum of clipped double Q
    (beta < 0 is less pessimistic: with twin critics, beta = -1 gives their mean)."""
    value = q.min(axis=0)
    if penalty:
        value = value - penalty * q.std(axis=0)
    return value


def fixed_reward_scale(agent: Any, batch: Batch) -> jax.Array:
    """The divisor of the rewards under ``normalize_rewards``: the root mean square of the
    first update's batch rewards (1 if they are all 0), then fixed for the rest of the run.
    Rewards multiplied by c give a divisor multiplied by c."""
    rms = jnp.sqrt(jnp.mean(batch.reward**2))
    first = jnp.where(rms > 0, rms, 1.0)
    return jnp.where(agent.num_updates == 0, first, agent.reward_scale)


def normalize_batch_rewards(agent: Agent, batch: Batch) -> tuple[Agent, Batch]:
    """Under ``normalize_rewards``: fix the agent's ``reward_scale`` at the first update
    (:func:`fixed_reward_scale`) and divide the batch's rewards by it; otherwise unchanged."""
    if not agent.config.normalize_rewards:
        return agent, batch
    agent = agent.replace(reward_scale=fixed_reward_scale(agent, batch))
    return agent, batch._replace(reward=batch.reward / agent.reward_scale)

"""Q-score matching (Psenka et al., ICML 2024, Algorithm 1) as an immutable pytree + pure updates.

The agent holds only arrays (parameters, optimiser states, target critics, the noise
schedule, a PRNG key and an update counter); its config and action size are static
fields, so networks and optimisers are rebuilt from the config inside jitted code and
nothing global is captured. :func:`update` performs ``utd`` full updates in one call.

One update, for a batch (s, a, r, s', terminated) from replay:

* actor (the QSM step): k ~ U{0..T-1}, eps ~ N(0, I), a_k = sqrt(alpha_bar_k) a +
  sqrt(1 - alpha_bar_k) eps; g = mean_j grad_a Q_phi_j(s, a_k) (no gradient into the
  critics); minimise || eps_theta(s, a_k, k) - (-alpha g) ||^2 over theta only (with
  ``action_prior`` = ``uniform``, the target also holds the noise prediction of uniform
  actions at a_k; with ``q_score_actions`` = ``policy``, a is a fresh chain sample at s
  instead of the replay action; with ``bc_weight`` w, the target also holds w eps, the
  denoising target of the replay action, for offline training: QSM + BC);
* (optional, ``target_action_spread``) the temperature lambda of the normalized targets
  takes one step towards the spread s*: measure the spread of the policy's chain samples
  at a few batch states and move log lambda by -lr (log spread - log s*);
* critic: a' = chain_theta(s') + clip(N(0, sigma_target^2)), clipped to [-1, 1];
  y = r + gamma (1 - terminated) min_j Q_target_j(s', a') (the max of that over N samples a'
  with ``best_of_n_target`` = N); minimise sum_j (Q_j(s, a) - y)^2;
  then Polyak-average the target critics with rate tau.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from qscore.config import QSMConfig
from qscore.diffusion import (
    Schedule,
    make_schedule,
    noise_actions,
    sample_chain,
    uniform_prior_eps,
)
from qscore.networks import DenoiserTables, ScoreNet, chain_denoiser, denoiser_tables
from qscore.replay import Batch

Params = Any
Metrics = dict[str, jax.Array]


class QSMAgent(struct.PyTreeNode):
    """The whole learner state. Immutable: updates return a new agent."""

    actor_params: Params
    """theta: parameters of the denoiser eps_theta."""
    actor_opt_state: optax.OptState
    critic_params: Params
    """phi_1..phi_N: stacked parameters of the critic ensemble."""
    critic_opt_state: optax.OptState
    target_critic_params: Params
    """Polyak-averaged copies of the critic parameters."""
    schedule: Schedule
    rng: jax.Array
    num_updates: jax.Array
    reward_scale: jax.Array
    """Divisor of the rewards the critics learn from (1 unless ``normalize_rewards``)."""
    temperature: jax.Array
    """lambda, the temperature of the normalized targets (fixed at ``q_score_temperature``
    unless ``target_action_spread`` tunes it)."""
    config: QSMConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)

    def chain(self) -> ChainPolicy:
        """pi_theta with this agent's theta, noise schedule and online critics phi."""
        return ChainPolicy(
            actor_params=self.actor_params,
            schedule=self.schedule,
            critic_params=self.critic_params,
            config=self.config,
            action_dim=self.action_dim,
        )

    def policy(self, obs: jax.Array, key: jax.Array, explore: bool) -> tuple[jax.Array, jax.Array]:
        """One action for one observation, and the key to use next time (pure; vmappable).

        ``explore`` adds the exploration noise; otherwise it is one sample of the chain.
        """
        return _select_action(self.chain(), obs, key, explore)

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool) -> tuple[np.ndarray, jax.Array]:
        """:meth:`policy` for a host observation, returning a NumPy action. To act many
        times with fixed parameters, :meth:`frozen` computes the terms that depend on theta
        alone once."""
        action, next_key = _select_action(self.chain(), obs, key, explore)
        return np.asarray(action), next_key

    def frozen(self) -> FrozenQSMPolicy:
        """This agent's policy for acting many times (evaluation, deployment)."""
        tables = _policy_tables(self.config, self.action_dim, self.actor_params)
        return FrozenQSMPolicy(self.chain().replace(tables=tables))


class ChainPolicy(struct.PyTreeNode):
    """pi_theta(a | s): the reverse diffusion chain of the denoiser eps_theta under a noise
    schedule (alpha_bar_k, k < T), with what the helpers that sample or train it need.

    Immutable; its config and action size are static, so it passes through ``jax.jit``
    like the agent. Build it with :meth:`QSMAgent.chain`; to differentiate in theta, pass
    ``chain.replace(actor_params=theta)`` (everything else is held fixed).
    """

    actor_params: Params
    """theta: parameters of the denoiser eps_theta."""
    schedule: Schedule
    config: QSMConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)
    critic_params: Params | None = None
    """phi_1..phi_N: the critics that pick the best of N samples (:func:`best_of_n`) and
    give the Q-score of :func:`qsm_actor_loss` (the online or the target critics)."""
    tables: DenoiserTables | None = None
    """The terms of eps_theta that depend on theta alone
    (:func:`qscore.networks.denoiser_tables`), or None to compute them with each chain."""


@dataclass(frozen=True)
class FrozenQSMPolicy:
    """A QSM agent's policy with fixed parameters: the denoiser's terms that depend on theta
    alone (:func:`qscore.networks.denoiser_tables`) computed once, so that each action
    costs only the chain's work on the observation; the same actions as the agent's."""

    chain: ChainPolicy
    """The agent's chain, with its ``tables``."""

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool) -> tuple[np.ndarray, jax.Array]:
        action, next_key = _select_action(self.chain, obs, key, explore)
        return np.asarray(action), next_key

    def frozen(self) -> FrozenQSMPolicy:
        return self


def score_net(config: QSMConfig, action_dim: int) -> ScoreNet:
    return ScoreNet(action_dim, config.actor_hidden, config.time_features, config.time_hidden)


def actor_learning_rate(config: QSMConfig) -> optax.ScalarOrSchedule:
    """Adam step size of the denoiser: cosine-decayed to 0 over ``actor_lr_decay_steps``."""
    if config.actor_lr_decay_steps > 0:
        return optax.cosine_decay_schedule(config.actor_lr, config.actor_lr_decay_steps)
    return config.actor_lr


def actor_optimizer(config: QSMConfig) -> optax.GradientTransformation:
    return optax.adam(actor_learning_rate(config))


def schedule_of(config: QSMConfig) -> Schedule:
    """The noise schedule a config names (its kind, T and the kind's parameters)."""
    return make_schedule(
        config.beta_schedule,
        config.num_diffusion_steps,
        config.beta_min,
        config.beta_max,
        config.linear_beta_start,
        config.linear_beta_end,
    )


def create_qsm(config: QSMConfig, obs_dim: int, action_dim: int, seed: int) -> QSMAgent:
    """Initialise networks, optimisers and targets from ``seed``."""
    rng, actor_key, critic_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    steps = jnp.zeros((1, 1), jnp.int32)
    actor_params = score_net(config, action_dim).init(actor_key, obs, action, steps)["params"]
    critic_params = critic_net(config).init(critic_key, obs, action)["params"]
    return QSMAgent(
        actor_params=actor_params,
        actor_opt_state=actor_optimizer(config).init(actor_params),
        critic_params=critic_params,
        critic_opt_state=critic_optimizer(config).init(critic_params),
        target_critic_params=critic_params,
        schedule=schedule_of(config),
        rng=rng,
        num_updates=jnp.zeros((), jnp.int32),
        reward_scale=jnp.ones((), jnp.float32),
        temperature=jnp.asarray(config.q_score_temperature, jnp.float32),
        config=config,
        action_dim=action_dim,
    )


def sample_policy(chain: ChainPolicy, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Actions a_0 ~ pi_theta(. | s) for a batch of observations, by the full reverse chain
    (with ``chain.tables`` when given, else computing them from theta)."""
    config = chain.config
    denoise = chain_denoiser(
        score_net(config, chain.action_dim),
        chain.actor_params,
        obs,
        config.num_diffusion_steps,
        chain.tables,
    )
    return sample_chain(
        denoise,
        chain.schedule,
        key,
        (obs.shape[0], chain.action_dim),
        config.sampling_temperature,
        config.clip_sampler,
    )


@partial(jax.jit, static_argnames=("config", "action_dim"))
def _policy_tables(config: QSMConfig, action_dim: int, actor_params: Params) -> DenoiserTables:
    return denoiser_tables(score_net(config, action_dim), actor_params, config.num_diffusion_steps)


def best_of_n(chain: ChainPolicy, obs: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
    """For each observation (rows of ``obs``), the chain sample with the highest
    min_j Q_phi_j (phi: ``chain.critic_params``) among ``num_samples`` (one plain sample
    when ``num_samples`` is 1)."""
    if num_samples == 1:
        return sample_policy(chain, obs, key)
    batch = obs.shape[0]
    repeated = jnp.repeat(obs, num_samples, axis=0)
    candidates = sample_policy(chain, repeated, key)
    q = q_values(chain.config, chain.critic_params, repeated, candidates).min(axis=0)
    best = jnp.argmax(q.reshape(batch, num_samples), axis=1)
    candidates = candidates.reshape(batch, num_samples, chain.action_dim)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]


@partial(jax.jit, static_argnames=("explore",))
def _select_action(
    chain: ChainPolicy, obs: jax.Array, key: jax.Array, explore: bool
) -> tuple[jax.Array, jax.Array]:
    """One action for one observation (the best of ``best_of_n_explore`` or
    ``best_of_n_eval`` chain samples, plus exploration noise when ``explore``), and the
    next key."""
    config = chain.config
    next_key, chain_key, noise_key = jax.random.split(key, 3)
    obs = jnp.asarray(obs, jnp.float32)[None]
    num_samples = config.best_of_n_explore if explore else config.best_of_n_eval
    action = best_of_n(chain, obs, chain_key, num_samples)[0]
    if explore:
        noise = config.exploration_noise * jax.random.normal(noise_key, action.shape)
        action = jnp.clip(action + noise, -1.0, 1.0)
    return action, next_key


def q_score(
    config: QSMConfig, critic_params: Params, obs: jax.Array, action: jax.Array
) -> jax.Array:
    """g = mean_j grad_a Q_phi_j(s, a), one row per observation (the Q-score)."""

    def mean_q_summed(a: jax.Array) -> jax.Array:
        return q_values(config, critic_params, obs, a).mean(axis=0).sum()

    return jax.grad(mean_q_summed)(action)


def td_target(agent: QSMAgent, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + gamma (1 - terminated) max_i V(s', a'_i), where a'_1..a'_N are chain samples
    plus clipped target noise, N = ``best_of_n_target`` (1 in the paper, where the max is over
    one sample), and V = min_j Q_target_j - beta std_j Q_target_j (beta = 0 in the paper)."""
    config = agent.config
    num_samples = config.best_of_n_target
    chain_key, noise_key = jax.random.split(key)
    next_obs = jnp.repeat(batch.next_obs, num_samples, axis=0)
    next_action = sample_policy(agent.chain(), next_obs, chain_key)
    noise = config.target_noise * jax.random.normal(noise_key, next_action.shape)
    noise = jnp.clip(noise, -config.target_noise_clip, config.target_noise_clip)
    next_action = jnp.clip(next_action + noise, -1.0, 1.0)
    next_q = pessimistic_value(
        q_values(config, agent.target_critic_params, next_obs, next_action),
        config.td_disagreement_penalty,
    )
    best_q = next_q.reshape(-1, num_samples).max(axis=1)
    return bootstrap_target(batch.reward, batch.terminated, config.discount, best_q, batch.horizon)


def q_score_target(
    config: QSMConfig,
    g: jax.Array,
    sigma: jax.Array,
    noise: jax.Array,
    temperature: jax.Array | None = None,
    level_scale: jax.Array | float = 1.0,
) -> jax.Array:
    """The denoiser's regression target eps* for Q-scores g (B, d) at noise levels sigma (B, 1).

    ``scaled`` (the paper): eps* = -alpha g. ``normalized``: eps* = -sigma_k g / (lambda
    mean|g|), the mean over the batch, so the target no longer has the scale of the rewards
    and shrinks with the noise level as a score should; ``normalized_per_state`` takes
    mean|g| over each state's action coordinates; lambda is ``temperature`` (by default
    the config's ``q_score_temperature``).
    ``level_scale`` multiplies the Q-score part (1/sqrt(alpha_bar_k) when g was taken at the
    clean action, ``q_score_at`` = ``clean``).
    The Q-score part is weighted by ``q_score_weight``; ``bc_weight`` w adds w eps, the
    forward noise (the denoising target of the replay action): with both weights 1 the
    target is the noise prediction of the replay distribution tilted by exp(Q / lambda)
    (QSM + BC); with ``q_score_weight`` 0, it is plain denoising (diffusion BC).
    """
    if config.q_score_target == "scaled":
        target = -config.q_score_scale * g
    else:
        if temperature is None:
            temperature = jnp.asarray(config.q_score_temperature)
        per_state = config.q_score_target == "normalized_per_state"
        axes = -1 if per_state else None
        magnitude = jnp.abs(g).mean(axis=axes, keepdims=per_state)
        target = -sigma * g / (temperature * magnitude + 1e-8)
    target = config.q_score_weight * target * level_scale  # level: see q_score_at
    if config.bc_weight > 0:
        target = target + config.bc_weight * noise
    return target


def qsm_actor_loss(
    chain: ChainPolicy, batch: Batch, key: jax.Array, temperature: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """The QSM loss: mean_batch || eps_theta(s, a_k, k) - eps*(g(s, a_k)) ||^2.

    g is the critics' action-gradient at the noised replay action, held fixed
    (stop-gradient), so only theta receives gradient; eps* is :func:`q_score_target`
    (-alpha g in the paper; ``temperature`` is lambda of the normalized targets), plus the
    noise prediction of uniform actions at a_k with ``action_prior`` = ``uniform``.
    theta is ``chain.actor_params`` (differentiate through ``chain.replace(actor_params=...)``);
    phi is ``chain.critic_params``, the online or the target critics.
    """
    config, schedule = chain.config, chain.schedule
    step_key, noise_key = jax.random.split(key)
    batch_size = batch.action.shape[0]
    steps = jax.random.randint(step_key, (batch_size, 1), 0, config.num_diffusion_steps)
    noise = jax.random.normal(noise_key, batch.action.shape)
    noisy_action = noise_actions(schedule, batch.action, steps[:, 0], noise)
    alpha_bar = schedule.alpha_bars[steps]
    sigma = jnp.sqrt(1.0 - alpha_bar)
    clean = config.q_score_at == "clean"
    scored_action = batch.action if clean else noisy_action
    if config.q_score_weight > 0:
        g = jax.lax.stop_gradient(q_score(config, chain.critic_params, batch.obs, scored_action))
    else:  # diffusion BC: the target is the noise alone, the critics are not asked
        g = jnp.zeros_like(scored_action)
    level_scale = 1.0 / jnp.sqrt(alpha_bar) if clean else 1.0
    target_eps = q_score_target(config, g, sigma, noise, temperature, level_scale)
    if config.action_prior == "uniform":
        target_eps = target_eps + uniform_prior_eps(noisy_action, alpha_bar)
    eps = score_net(config, chain.action_dim).apply(
        {"params": chain.actor_params}, batch.obs, noisy_action, steps
    )
    loss = ((eps - target_eps) ** 2).sum(axis=-1).mean()
    cosine = -(eps * g).sum(-1) / (
        jnp.linalg.norm(eps, axis=-1) * jnp.linalg.norm(g, axis=-1) + 1e-8
    )
    metrics = {
        "actor_loss": loss,
        "q_grad_norm": jnp.linalg.norm(g, axis=-1).mean(),
        "eps_norm": jnp.linalg.norm(eps, axis=-1).mean(),
        "score_alignment": cosine.mean(),
    }
    return loss, metrics


def update_actor(agent: QSMAgent, batch: Batch, key: jax.Array) -> tuple[QSMAgent, Metrics]:
    """One Adam step of the denoiser on the QSM loss (at the replay actions of ``batch``, or
    at fresh chain samples under ``q_score_actions`` = ``policy``)."""
    config = agent.config

    chain = agent.chain()
    if config.q_score_from_target_critics:
        chain = chain.replace(critic_params=agent.target_critic_params)
    if config.q_score_actions == "policy":  # drawn outside loss_fn: no gradient through the chain
        key, chain_key = jax.random.split(key)
        batch = batch._replace(action=sample_policy(chain, batch.obs, chain_key))

    def loss_fn(actor_params: Params) -> tuple[jax.Array, Metrics]:
        return qsm_actor_loss(
            chain.replace(actor_params=actor_params), batch, key, agent.temperature
        )

    params, opt_state, metrics, grad_norm = gradient_step(
        loss_fn, actor_optimizer(config), agent.actor_params, agent.actor_opt_state
    )
    agent = agent.replace(actor_params=params, actor_opt_state=opt_state)
    return agent, {**metrics, "actor_grad_norm": grad_norm}


def update_critic(agent: QSMAgent, batch: Batch, key: jax.Array) -> tuple[QSMAgent, Metrics]:
    """One Adam step of the critics on the TD loss, then the Polyak update of the targets."""
    agent, metrics = critic_step(agent, batch, td_target(agent, batch, key))
    targets = polyak(agent.critic_params, agent.target_critic_params, agent.config.tau)
    return agent.replace(target_critic_params=targets), metrics


def chain_samples_per_state(
    agent: QSMAgent, obs: jax.Array, key: jax.Array, num_samples: int
) -> jax.Array:
    """``num_samples`` chain samples (no exploration noise) for each state of ``obs``
    (B, obs_dim), as an array (B, num_samples, action_dim)."""
    repeated = jnp.repeat(obs, num_samples, axis=0)
    actions = sample_policy(agent.chain(), repeated, key)
    return actions.reshape(obs.shape[0], num_samples, agent.action_dim)


def action_spread(per_state: jax.Array) -> jax.Array:
    """The std of the samples for one state (axis 1 of ``per_state``), averaged over states
    and action coordinates: 0 for a deterministic policy, 0.577 for uniform actions."""
    return per_state.std(axis=1).mean()


def tune_temperature(agent: QSMAgent, spread: jax.Array) -> QSMAgent:
    """One step of lambda towards the spread s* (``target_action_spread``), in log space:
    log lambda moves by -lr log(spread / s*), so lambda falls while the measured ``spread``
    is wider than s* and rises while it is narrower, within the bounds."""
    config = agent.config
    error = jnp.log(jnp.maximum(spread, 1e-3)) - jnp.log(config.target_action_spread)
    temperature = jnp.clip(
        agent.temperature * jnp.exp(-config.temperature_lr * error),
        config.min_q_score_temperature,
        config.max_q_score_temperature,
    )
    return agent.replace(temperature=temperature)


def update_step(agent: QSMAgent, batch: Batch) -> tuple[QSMAgent, Metrics]:
    """One QSM update: the actor step (Algorithm 1), then the critic step, as the authors do
    (and, with ``target_action_spread``, the step of lambda between them)."""
    config = agent.config
    agent, batch = normalize_batch_rewards(agent, batch)
    tuned = config.target_action_spread is not None
    rng, actor_key, critic_key, *spread_key = jax.random.split(agent.rng, 4 if tuned else 3)
    agent, actor_metrics = update_actor(agent, batch, actor_key)
    if tuned:
        states = batch.obs[: config.spread_states]
        spread = action_spread(
            chain_samples_per_state(agent, states, spread_key[0], config.spread_samples)
        )
        agent = tune_temperature(agent, spread)
        actor_metrics = {**actor_metrics, "tuning_spread": spread}
    agent, critic_metrics = update_critic(agent, batch, critic_key)
    lr = actor_learning_rate(config)
    actor_lr = lr(agent.num_updates) if callable(lr) else jnp.asarray(lr)
    agent = agent.replace(rng=rng, num_updates=agent.num_updates + 1)
    metrics = {**actor_metrics, **critic_metrics, "actor_lr": actor_lr}
    return agent, {
        **metrics,
        "reward_scale": agent.reward_scale,
        "q_score_temperature": agent.temperature,
    }


@partial(jax.jit, static_argnames=("samples_per_state",))
def diagnose(
    agent: QSMAgent, obs: jax.Array, key: jax.Array, samples_per_state: int = 8
) -> Metrics:
    """Diagnostics of the policy at states ``obs`` (B, obs_dim), for the training log.

    ``action_spread``: the std of ``samples_per_state`` chain samples (no exploration noise)
    for the same state, averaged over states and action coordinates (the policy's own
    exploration; 0 for a deterministic policy, 0.577 for uniform actions on [-1, 1]).
    ``action_at_bound``: the share of sampled action coordinates within 1e-3 of +-1.
    """
    per_state = chain_samples_per_state(agent, obs, key, samples_per_state)
    return {
        "action_spread": action_spread(per_state),
        "action_at_bound": (jnp.abs(per_state) > 1.0 - 1e-3).mean(),
    }


@jax.jit
def update(agent: QSMAgent, batches: Batch) -> tuple[QSMAgent, Metrics]:
    """``utd`` consecutive updates in one compiled call; ``batches`` has a leading utd axis.

    Returns the new agent and the metrics of the last update.
    """
    return scan_updates(update_step, agent, batches)

"""Noise schedules and the DDPM reverse chain that turns Gaussian noise into actions.

Indices run over k = 0 .. T-1 (the paper's t = k + 1). The forward process noises an action
a_0 to a_k = sqrt(alpha_bar_k) a_0 + sqrt(1 - alpha_bar_k) eps; the reverse chain starts from
a_T ~ N(0, I) and applies, for k = T-1 down to 0,

    a_{k-1} = (a_k - beta_k / sqrt(1 - alpha_bar_k) * eps_theta(s, a_k, k)) / sqrt(alpha_k)
              + [k > 0] * sqrt(beta_k) * temperature * z,

clipping each iterate to [-1, 1] when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Schedule(NamedTuple):
    """The noise schedule as arrays of length T (a pytree, so it can live in the agent)."""

    betas: jax.Array
    """[beta_t] per-step noise variance."""
    alphas: jax.Array
    """[alpha_t = 1 - beta_t]."""
    alpha_bars: jax.Array
    """[alpha_bar_t = prod_{i<=t} alpha_i], strictly decreasing in (0, 1)."""


def vp_betas(num_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    """Betas of the variance-preserving SDE with a linear rate beta(u) from b_min to b_max.

    Step t of T integrates the rate over u in [(t-1)/T, t/T]:
    alpha_t = exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2)).
    """
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    log_alphas = -beta_min / num_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / num_steps**2
    return 1.0 - np.exp(log_alphas)


def cosine_betas(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Betas of the cosine schedule (Nichol and Dhariwal 2021): alpha_bar(u) = cos^2 of u."""
    u = np.linspace(0.0, 1.0, num_steps + 1, dtype=np.float64)
    f = np.cos((u + offset) / (1 + offset) * np.pi / 2) ** 2
    alpha_bars = f / f[0]
    return np.clip(1.0 - alpha_bars[1:] / alpha_bars[:-1], 0.0, max_beta)


def linear_betas(num_steps: int, start: float = 1e-4, end: float = 2e-2) -> np.ndarray:
    """Betas evenly spaced from ``start`` to ``end`` (the DDPM paper's schedule).

    With the DDPM values (1e-4 to 2e-2, made for T = 1000) and a small T, alpha_bar_T stays
    near 1: the chain then starts from noise that the forward process never reaches.
    """
    if num_steps == 1:
        return np.asarray([end], dtype=np.float64)
    return np.linspace(start, end, num_steps, dtype=np.float64)


def make_schedule(
    kind: str,
    num_steps: int,
    beta_min: float = 0.1,
    beta_max: float = 10.0,
    linear_start: float = 1e-4,
    linear_end: float = 2e-2,
) -> Schedule:
    """Build a :class:`Schedule` of ``num_steps`` steps; ``kind`` is ``vp``, ``cosine`` or
    ``linear`` (``beta_min``/``beta_max`` parametrise ``vp``, ``linear_*`` the linear one)."""
    if kind == "vp":
        betas = vp_betas(num_steps, beta_min, beta_max)
    elif kind == "cosine":
        betas = cosine_betas(num_steps)
    elif kind == "linear":
        betas = linear_betas(num_steps, linear_start, linear_end)
    else:
        raise ValueError(f"unknown beta schedule {kind!r}")
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    return Schedule(
        betas=jnp.asarray(betas, jnp.float32),
        alphas=jnp.asarray(alphas, jnp.float32),
        alpha_bars=jnp.asarray(alpha_bars, jnp.float32),
    )


def noise_actions(
    schedule: Schedule, actions: jax.Array, steps: jax.Array, noise: jax.Array
) -> jax.Array:
    """Forward process: a_k = sqrt(alpha_bar_k) a_0 + sqrt(1 - alpha_bar_k) eps, per row."""
    alpha_bar = schedule.alpha_bars[steps][:, None]
    return jnp.sqrt(alpha_bar) * actions + jnp.sqrt(1.0 - alpha_bar) * noise


DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
"""eps_theta(a_k, k): noisy actions (B, d) and the step index as a (1, 1) array -> noise (B, d)."""


def sample_chain(
    denoise: DenoiseFn,
    schedule: Schedule,
    key: jax.Array,
    shape: tuple[int, int],
    temperature: float = 1.0,
    clip: bool = True,
) -> jax.Array:
    """Run the T reverse steps from a_T ~ N(0, I) and return a_0 of ``shape`` (B, d)."""
    num_steps = schedule.betas.shape[0]
    init_key, step_keys = jax.random.split(key)
    actions = jax.random.normal(init_key, shape)
    step_keys = jax.random.split(step_keys, num_steps)

    def step(actions: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple:
        k, step_key = inputs
        z = jax.random.normal(step_key, shape)
        return reverse_step(denoise, schedule, actions, k, z, temperature, clip), None

    ks = jnp.arange(num_steps - 1, -1, -1)
    # Unrolled: T is small, and XLA then fuses across steps and counts every step's FLOPs.
    actions, _ = jax.lax.scan(step, actions, (ks, step_keys[ks]), unroll=True)
    return actions


def reverse_step(
    denoise: DenoiseFn,
    schedule: Schedule,
    actions: jax.Array,
    k: jax.Array,
    z: jax.Array,
    temperature: float,
    clip: bool,
) -> jax.Array:
    """a_{k-1} = (a_k - beta_k / sqrt(1 - alpha_bar_k) eps_theta(a_k, k)) / sqrt(alpha_k)
    + sqrt(beta_k) * temperature * z (no noise at k = 0), clipped to [-1, 1] if ``clip``."""
    eps = denoise(actions, jnp.full((1, 1), k))
    beta, alpha, alpha_bar = schedule.betas[k], schedule.alphas[k], schedule.alpha_bars[k]
    mean = (actions - beta / jnp.sqrt(1.0 - alpha_bar) * eps) / jnp.sqrt(alpha)
    actions = mean + (k > 0) * jnp.sqrt(beta) * temperature * z
    return jnp.clip(actions, -1.0, 1.0) if clip else actions


def chain_noise(key: jax.Array, shape: tuple[int, int], num_steps: int) -> jax.Array:
    """The Gaussian draws :func:`sample_chain` makes from ``key``: a_T's at row 0, step k's
    z at row k + 1; shape (T + 1, B, d)."""
    init_key, step_keys = jax.random.split(key)
    initial = jax.random.normal(init_key, shape)
    per_step = jax.vmap(lambda step_key: jax.random.normal(step_key, shape))(
        jax.random.split(step_keys, num_steps)
    )
    return jnp.concatenate([initial[None], per_step])


def run_chain(
    denoise: DenoiseFn,
    schedule: Schedule,
    noise: jax.Array,
    temperature: float = 1.0,
    clip: bool = True,
) -> jax.Array:
    """:func:`sample_chain` with its Gaussian draws given (:func:`chain_noise`'s layout):
    no random numbers inside, for export to ONNX. Python-unrolled (T is small)."""
    actions = noise[0]
    for k in range(schedule.betas.shape[0] - 1, -1, -1):
        actions = reverse_step(
            denoise, schedule, actions, jnp.asarray(k), noise[k + 1], temperature, clip
        )
    return actions


def uniform_prior_eps(noisy_actions: jax.Array, alpha_bar: jax.Array) -> jax.Array:
    """The exact noise prediction eps = -sigma_k grad log p_k(a_k) for actions a_0 uniform on
    [-1, 1]^d, noised to a_k = sqrt(alpha_bar_k) a_0 + sigma_k eps (sigma_k^2 = 1 - alpha_bar_k).

    Per coordinate, with r = sqrt(alpha_bar_k) and u+- = (|a_k| +- r) / sigma_k,
    p_k(a_k) is proportional to Phi(-u-) - Phi(-u+), and

        eps = sign(a_k) phi(u-) (1 - exp(-2 r |a_k| / sigma_k^2)) / (Phi(-u-) - Phi(-u+)),

    computed from log Phi, so it stays finite far outside the box. ``alpha_bar`` broadcasts
    against ``noisy_actions`` (B, d), for example as (B, 1).
    """
    r = jnp.sqrt(alpha_bar)
    sigma = jnp.sqrt(1.0 - alpha_bar)
    x = jnp.abs(noisy_actions)
    u_minus = (x - r) / sigma
    u_plus = (x + r) / sigma
    log_tail_minus = jax.scipy.special.log_ndtr(-u_minus)
    log_tail_plus = jax.scipy.special.log_ndtr(-u_plus)
    # log(Phi(-u-) - Phi(-u+)): the log of the mass between the two tails, with x >= 0.
    log_mass = log_tail_minus + jnp.log(-jnp.expm1(log_tail_plus - log_tail_minus))
    log_density = -0.5 * u_minus**2 - 0.5 * jnp.log(2.0 * jnp.pi)
    shrink = -jnp.expm1(-2.0 * r * x / sigma**2)
    return jnp.sign(noisy_actions) * jnp.exp(log_density - log_mass) * shrink

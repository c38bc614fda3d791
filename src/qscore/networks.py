"""Flax modules: MLP, learnable Fourier time features, the denoiser and the critic ensemble."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


def mish(x: jax.Array) -> jax.Array:
    """mish(x) = x tanh(softplus(x)), computed with one exp and one division.

    With u = e^x, tanh(log(1 + u)) = n / (n + 2) for n = u (u + 2). The exponent is capped
    at 20, where the ratio is 1 in float32; this is about twice as fast on CPU as the
    textbook form (three transcendental functions) and agrees with it to 1e-5.
    """
    u = jnp.exp(jnp.minimum(x, 20.0))
    n = u * (u + 2.0)
    return x * (n / (n + 2.0))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "mish": mish}


class MLP(nn.Module):
    """Dense layers of widths ``hidden``, each followed by ``activation`` (after a layer
    normalisation when ``layer_norm``), then an output layer."""

    hidden: Sequence[int]
    output_dim: int
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.output_dim)(x)


class FourierTimeFeatures(nn.Module):
    """Learnable Fourier features of the diffusion step: [cos(2 pi k W), sin(2 pi k W)]."""

    num_features: int = 64
    init_scale: float = 0.2

    @nn.compact
    def __call__(self, steps: jax.Array) -> jax.Array:
        frequencies = self.param(
            "frequencies",
            nn.initializers.normal(self.init_scale),
            (steps.shape[-1], self.num_features // 2),
        )
        phases = 2.0 * jnp.pi * steps.astype(jnp.float32) @ frequencies
        return jnp.concatenate([jnp.cos(phases), jnp.sin(phases)], axis=-1)


class ScoreNet(nn.Module):
    """The denoiser eps_theta(s, a_k, k): predicts the noise in a noisy action a_k.

    The step index k goes through Fourier features and an MLP; the result is concatenated
    with the noisy action and the observation and fed to a mish MLP. ``steps`` may have a
    single row shared by the whole batch (as in the reverse chain): the time embedding is
    then computed once and broadcast.
    """

    action_dim: int
    hidden: Sequence[int] = (512, 512)
    time_features: int = 64
    time_hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, obs: jax.Array, noisy_action: jax.Array, steps: jax.Array) -> jax.Array:
        t_features = FourierTimeFeatures(self.time_features)(steps)
        t_embedding = MLP(self.time_hidden[:-1], self.time_hidden[-1], "mish")(t_features)
        t_embedding = jnp.broadcast_to(
            t_embedding, noisy_action.shape[:-1] + t_embedding.shape[-1:]
        )
        x = jnp.concatenate([noisy_action, obs, t_embedding], axis=-1)
        return MLP(self.hidden, self.action_dim, "mish")(x)


class DenoiserTables(NamedTuple):
    """The terms of the denoiser's first layer that depend on theta alone (not on s or a_k),
    for the T steps of a reverse chain; :func:`denoiser_tables` computes them."""

    action_kernel: jax.Array
    """W_a: the rows of the first layer's kernel that multiply a_k, (d, w)."""
    obs_kernel: jax.Array
    """W_s: the rows that multiply s, (obs_dim, w)."""
    time_terms: jax.Array
    """W_e e(k) for k = 0 .. T-1, (T, w): the time embeddings through their rows."""


def denoiser_tables(net: ScoreNet, params: dict, num_steps: int) -> DenoiserTables:
    """Split the trunk's first kernel by rows into W_a, W_s, W_e (its input is [a_k, s, e(k)])
    and compute W_e e(k) for the T steps: the work of a chain that depends on theta alone."""
    steps = jnp.arange(num_steps)[:, None]
    features = FourierTimeFeatures(net.time_features).apply(
        {"params": params["FourierTimeFeatures_0"]}, steps
    )
    time_mlp = MLP(net.time_hidden[:-1], net.time_hidden[-1], "mish")
    embeddings = time_mlp.apply({"params": params["MLP_0"]}, features)
    kernel = params["MLP_1"]["Dense_0"]["kernel"]
    obs_end = kernel.shape[0] - embeddings.shape[-1]
    return DenoiserTables(
        action_kernel=kernel[: net.action_dim],
        obs_kernel=kernel[net.action_dim : obs_end],
        time_terms=embeddings @ kernel[obs_end:],
    )


def chain_denoiser(
    net: ScoreNet,
    params: dict,
    obs: jax.Array,
    num_steps: int,
    tables: DenoiserTables | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """eps_theta(s, ., k) for fixed observations ``obs``, for the T steps of a reverse chain.

    The same function as ``net.apply({"params": params}, obs, a_k, k)`` (to float rounding),
    with the work that does not depend on a_k done once per chain instead of at every step.
    The trunk's first layer acts on [a_k, s, e(k)], so its kernel splits by rows into
    W_a, W_s, W_e and its pre-activation is W_a a_k + (W_s s + b) + W_e e(k). The terms
    W_e e(k) of all T steps (``tables``, computed here when not given) and the term of s
    are computed once; each step then multiplies only a_k (d columns) before the hidden
    layers. The returned function takes noisy actions (B, d) and the step index as a (1, 1)
    array, as :data:`qscore.diffusion.DenoiseFn`.
    """
    if tables is None:
        tables = denoiser_tables(net, params, num_steps)
    trunk = params["MLP_1"]
    layers = [trunk[f"Dense_{i}"] for i in range(len(net.hidden) + 1)]
    from_obs = obs @ tables.obs_kernel + layers[0]["bias"]

    def denoise(noisy_action: jax.Array, step: jax.Array) -> jax.Array:
        x = mish(noisy_action @ tables.action_kernel + from_obs + tables.time_terms[step[0, 0]])
        for layer in layers[1:-1]:
            x = mish(x @ layer["kernel"] + layer["bias"])
        return x @ layers[-1]["kernel"] + layers[-1]["bias"]

    return denoise


class Critic(nn.Module):
    """One action-value network Q_phi(s, a) -> scalar."""

    hidden: Sequence[int] = (512, 512)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden, 1, "relu", self.layer_norm)(x)[..., 0]


class CriticEnsemble(nn.Module):
    """``num`` independent critics evaluated together; returns Q values of shape (num, B)."""

    hidden: Sequence[int] = (512, 512)
    num: int = 2
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return ensemble(self.hidden, self.layer_norm)(obs, action)

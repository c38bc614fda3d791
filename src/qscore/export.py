"""A trained QSM policy as one ONNX file, and evaluation episodes that run it.

The exported graph maps an observation batch (B, obs_dim) and the chain's Gaussian draws
(T + 1, B * N, action_dim) (N = ``best_of_n_eval``; :func:`qscore.diffusion.chain_noise`'s
layout) to actions (B, action_dim) in the task's own units: the whole reverse chain
(:func:`qscore.diffusion.run_chain`) and, for N > 1, the pick of the sample with the
highest min_j Q_phi_j. The noise is an input, so the graph holds no random numbers and
gives JAX's actions for JAX's draws. Needs the ``export`` extra (jax2onnx, onnxruntime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qscore.errors import ConfigError

OBS_INPUT, NOISE_INPUT, ACTION_OUTPUT = "observation", "noise", "action"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"{module} is not installed; install the export extra: pip install -e '.[export]'"
        ) from None


def policy_from_noise(policy: Any) -> Any:
    """The QSM policy of ``policy`` (:class:`qscore.api.Policy`) as a pure function
    (obs (B, obs_dim), noise (T + 1, B * N, d)) -> actions (B, d) in the task's units."""
    from qscore.agents.qsm import schedule_of, score_net
    from qscore.diffusion import run_chain
    from qscore.networks import chain_denoiser

    agent = policy.agent
    config = agent.config
    if not hasattr(config, "num_diffusion_steps"):
        raise ConfigError("ONNX export covers QSM policies; this run is not a qsm run")
    action_dim, samples = policy.low.shape[0], config.best_of_n_eval
    schedule = schedule_of(config)
    low, high = jnp.asarray(policy.low), jnp.asarray(policy.high)

    def act(obs: jax.Array, noise: jax.Array) -> jax.Array:
        repeated = jnp.repeat(obs, samples, axis=0)
        denoise = chain_denoiser(
            score_net(config, action_dim), agent.actor_params, repeated,
            config.num_diffusion_steps,
        )  # fmt: skip
        candidates = run_chain(
            denoise, schedule, noise, config.sampling_temperature, config.clip_sampler
        )
        if samples > 1:
            q = _min_q(config, agent.critic_params, repeated, candidates)
            best = jnp.argmax(q.reshape(-1, samples), axis=1)
            picked = candidates.reshape(-1, samples, action_dim)
            candidates = jnp.take_along_axis(picked, best[:, None, None], axis=1)[:, 0]
        return low + (candidates + 1.0) * 0.5 * (high - low)

    return act


def _min_q(config: Any, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
    """min_j Q_phi_j(s, a), one critic at a time (the ensemble's vmapped layers have no
    ONNX conversion; the same parameters give the same values)."""
    from qscore.engine import member
    from qscore.networks import Critic

    ensemble = critic_params["VmapCritic_0"]
    critic = Critic(config.critic_hidden, config.critic_layer_norm)
    values = [
        critic.apply({"params": member(ensemble, j)}, obs, action)
        for j in range(config.num_critics)
    ]
    return jnp.min(jnp.stack(values), axis=0)


def export_onnx(policy: Any, path: str | Path) -> Path:
    """Write ``policy`` (a QSM :class:`qscore.api.Policy`) as an ONNX file at ``path``
    (atomically), with a dynamic batch size; returns the path."""
    act = policy_from_noise(policy)  # refuses a policy that is not QSM's
    onnx = _require("onnx")
    jax2onnx = _require("jax2onnx")
    config = policy.agent.config
    samples = config.best_of_n_eval
    model = jax2onnx.to_onnx(
        act,
        [
            ("B", policy.obs_dim),
            (
                config.num_diffusion_steps + 1,
                f"B*{samples}" if samples > 1 else "B",
                policy.low.shape[0],
            ),
        ],  # fmt: skip
        model_name="qscore_policy",
        input_names=[OBS_INPUT, NOISE_INPUT],
        output_names=[ACTION_OUTPUT],
    )
    for name, value in {"best_of_n_eval": samples, "algo": "qsm"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = name, str(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    onnx.save(model, str(temporary))
    temporary.replace(path)
    return path


class OnnxAgent:
    """An exported policy run by onnxruntime, with the ``act`` of a QSM agent (actions in
    [-1, 1], the next key): its chain noise is drawn from the key exactly as the agent
    draws it, so both give the same actions up to float rounding
    (:func:`qscore.evaluate.run_episodes` runs either)."""

    def __init__(self, path: str | Path, policy: Any) -> None:
        runtime = _require("onnxruntime")
        self.session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "best_of_n_eval" not in metadata:
            raise ConfigError(f"{path} was not written by qscore export")
        self.samples = int(metadata["best_of_n_eval"])  # the exported graph's N
        self.policy = policy

    def frozen(self) -> OnnxAgent:
        return self

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool = False) -> tuple:
        from qscore.diffusion import chain_noise

        if explore:
            raise ConfigError("the exported policy has no exploration noise")
        config, low, high = self.policy.agent.config, self.policy.low, self.policy.high
        next_key, chain_key, _ = jax.random.split(key, 3)  # as the agent's action selection
        shape = (self.samples, low.shape[0])
        noise = np.asarray(chain_noise(chain_key, shape, config.num_diffusion_steps))
        inputs = {OBS_INPUT: np.asarray(obs, np.float32)[None], NOISE_INPUT: noise}
        (action,) = self.session.run([ACTION_OUTPUT], inputs)
        return 2.0 * (action[0] - low) / (high - low) - 1.0, next_key

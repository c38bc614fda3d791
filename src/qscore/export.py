"""A trained policy (QSM, SAC or TD3) as one ONNX file, and evaluation episodes that run it.

Every exported graph maps an observation batch (B, obs_dim), and for a stochastic policy
its Gaussian draws, to actions (B, action_dim) in the task's own units:

* QSM: the draws of the chain, (T + 1, B * N, action_dim) (N = ``best_of_n_eval``;
  :func:`qscore.diffusion.chain_noise`'s layout), through the whole reverse chain
  (:func:`qscore.diffusion.run_chain`) and, for N > 1, the pick of the sample with the
  highest min_j Q_phi_j;
* SAC: tanh(mu(s)), the deterministic policy; or, exported from a policy with
  ``explore=True``, the sampled one tanh(mu(s) + sigma(s) * noise), noise (B, action_dim);
* TD3: the deterministic actor tanh(MLP(s)).

The noise is an input, so the graph holds no random numbers and gives JAX's actions for
JAX's draws. Needs the ``export`` extra (jax2onnx, onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qscore.api import Policy, load
from qscore.config import RunConfig
from qscore.envs import to_task_units, to_unit_range
from qscore.errors import ConfigError

OBS_INPUT, NOISE_INPUT, ACTION_OUTPUT = "observation", "noise", "action"
CHAIN, GAUSSIAN, NO_NOISE = "chain", "gaussian", "none"
"""The kinds of noise input (the file's ``noise`` metadata): QSM's chain draws, SAC's
Gaussian draw of the sampled policy, none."""


@dataclass(frozen=True)
class PolicyGraph:
    """A policy as a pure function to export, with what the file records about it."""

    act: Callable[..., jax.Array]
    """``act(obs)``, or ``act(obs, noise)`` with a noise input: actions in the task's units."""
    noise_shape: tuple[int | str, ...] | None
    """Shape of the noise input ("B": the batch size), or None for a deterministic policy."""
    metadata: dict[str, Any]
    """``algo``, ``noise`` (:data:`CHAIN`, :data:`GAUSSIAN`, :data:`NO_NOISE`) and, for
    QSM, ``best_of_n_eval``."""


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"{module} is not installed; install the export extra: pip install -e '.[export]'"
        ) from None


def policy_graph(policy: Policy) -> PolicyGraph:
    """The policy of ``policy`` as a pure function of its inputs (:class:`PolicyGraph`)."""
    builders = {"qsm": _qsm_graph, "sac": _sac_graph, "td3": _td3_graph}
    return builders[policy.algo](policy)


def _bounds(policy: Policy) -> tuple[jax.Array, jax.Array]:
    return jnp.asarray(policy.low), jnp.asarray(policy.high)


def _qsm_graph(policy: Policy) -> PolicyGraph:
    """(obs (B, obs_dim), noise (T + 1, B * N, d)) -> actions (B, d)."""
    from qscore.agents.qsm import schedule_of, score_net
    from qscore.diffusion import run_chain
    from qscore.networks import chain_denoiser

    if policy.explore:
        raise ConfigError("a QSM policy is exported without exploration noise (explore=False)")
    agent = policy.agent
    config = agent.config
    action_dim, samples = agent.action_dim, config.best_of_n_eval
    schedule, (low, high) = schedule_of(config), _bounds(policy)

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
        return to_task_units(candidates, low, high)

    rows = f"B*{samples}" if samples > 1 else "B"
    shape = (config.num_diffusion_steps + 1, rows, action_dim)
    return PolicyGraph(act, shape, {"algo": "qsm", "noise": CHAIN, "best_of_n_eval": samples})


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


def _sac_graph(policy: Policy) -> PolicyGraph:
    """obs -> tanh(mu(s)); with ``policy.explore``, (obs, noise (B, d)) -> tanh(mu + sigma
    noise), the action SAC samples (:func:`qscore.agents.sac.sample_tanh_gaussian`)."""
    from qscore.agents.sac import policy_distribution

    agent = policy.agent
    low, high = _bounds(policy)
    distribution = partial(policy_distribution, agent.config, agent.action_dim, agent.actor_params)

    def mean_action(obs: jax.Array) -> jax.Array:
        return to_task_units(jnp.tanh(distribution(obs)[0]), low, high)

    def sampled_action(obs: jax.Array, noise: jax.Array) -> jax.Array:
        mean, log_std = distribution(obs)
        return to_task_units(jnp.tanh(mean + jnp.exp(log_std) * noise), low, high)

    if policy.explore:
        shape = ("B", agent.action_dim)
        return PolicyGraph(sampled_action, shape, {"algo": "sac", "noise": GAUSSIAN})
    return PolicyGraph(mean_action, None, {"algo": "sac", "noise": NO_NOISE})


def _td3_graph(policy: Policy) -> PolicyGraph:
    """obs -> tanh(MLP(s)), TD3's deterministic actor."""
    from qscore.agents.td3 import deterministic_action

    if policy.explore:
        raise ConfigError(
            "TD3's exploration noise is not exported; its deployed policy is the deterministic"
            " actor (explore=False)"
        )
    agent = policy.agent
    low, high = _bounds(policy)

    def act(obs: jax.Array) -> jax.Array:
        unit = deterministic_action(agent.config, agent.action_dim, agent.actor_params, obs)
        return to_task_units(unit, low, high)

    return PolicyGraph(act, None, {"algo": "td3", "noise": NO_NOISE})


def export_onnx(policy: Policy, path: str | Path) -> Path:
    """Write ``policy`` (:class:`qscore.api.Policy` of a QSM, SAC or TD3 agent; for SAC,
    ``explore=True`` exports the sampled policy) as an ONNX file at ``path`` (atomically),
    with a dynamic batch size; returns the path."""
    graph = policy_graph(policy)  # refuses what cannot be exported, before the imports
    onnx = _require("onnx")
    jax2onnx = _require("jax2onnx")
    shapes: list[tuple[int | str, ...]] = [("B", policy.obs_dim)]
    names = [OBS_INPUT]
    if graph.noise_shape is not None:
        shapes.append(graph.noise_shape)
        names.append(NOISE_INPUT)
    model = jax2onnx.to_onnx(
        graph.act,
        shapes,
        model_name="qscore_policy",
        input_names=names,
        output_names=[ACTION_OUTPUT],
    )
    for name, value in graph.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = name, str(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    onnx.save(model, str(temporary))
    temporary.replace(path)
    return path


def export_run(
    run_dir: str | Path, out: str | Path, best_of_n: int | None = None, stochastic: bool = False
) -> Path:
    """Write the policy of a run's newest checkpoint to ``out``, as ``qscore export`` does:
    ``best_of_n`` (QSM only) replaces the run's ``best_of_n_eval``, ``stochastic`` (SAC
    only) exports the sampled policy; returns the path. The options are checked against
    the run's algorithm before the agent is loaded."""
    from qscore.rundir import read_config

    algo = RunConfig.from_dict(read_config(run_dir)).algo
    if best_of_n is not None and algo != "qsm":
        raise ConfigError(f"--best-of-n needs a qsm run; {run_dir} is {algo}")
    if stochastic and algo != "sac":
        raise ConfigError(
            f"--stochastic needs a sac run; {run_dir} is {algo}, whose exported policy is"
            + (" always sampled" if algo == "qsm" else " deterministic")
        )
    policy = load(run_dir)
    if best_of_n is not None:
        policy = policy.with_options(best_of_n_eval=best_of_n)
    return export_onnx(replace(policy, explore=stochastic), out)


@partial(jax.jit, static_argnames=("shape", "num_steps"))
def _chain_draws(key: jax.Array, shape: tuple[int, int], num_steps: int) -> tuple:
    """The next key and QSM's chain noise, split from ``key`` as QSM's action selection
    splits it (one compiled call per shape)."""
    from qscore.diffusion import chain_noise

    next_key, chain_key, _ = jax.random.split(key, 3)
    return next_key, chain_noise(chain_key, shape, num_steps)


@partial(jax.jit, static_argnames=("shape",))
def _gaussian_draws(key: jax.Array, shape: tuple[int, int]) -> tuple:
    """The next key and the Gaussian draw of SAC's sampled action, as SAC splits ``key``."""
    next_key, sample_key = jax.random.split(key)
    return next_key, jax.random.normal(sample_key, shape)


@jax.jit
def _no_draws(key: jax.Array) -> tuple:
    """The next key of SAC's and TD3's deterministic action selection; no noise."""
    return jax.random.split(key)[0], None


class OnnxAgent:
    """An exported policy run by onnxruntime, with the ``act`` of an agent (actions in
    [-1, 1], the next key): its noise is drawn from the key exactly as the agent draws it,
    so both give the same actions up to float rounding (:func:`qscore.evaluate.run_episodes`
    runs either). A file with SAC's sampled policy samples; its agent's counterpart is
    ``act(..., explore=True)``."""

    def __init__(self, path: str | Path, policy: Policy) -> None:
        runtime = _require("onnxruntime")
        self.session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "algo" not in metadata:
            raise ConfigError(f"{path} was not written by qscore export")
        algo = policy.algo
        if metadata["algo"] != algo:
            raise ConfigError(f"{path} holds a {metadata['algo']} policy; the run is {algo}")
        self.noise = metadata.get("noise", CHAIN)  # files of the first, QSM-only version
        self.samples = int(metadata.get("best_of_n_eval", 1))  # the exported graph's N
        self.policy = policy
        self._draw = self._drawer(policy.agent.action_dim)

    def _drawer(self, action_dim: int) -> Callable[[jax.Array], tuple]:
        """key -> (next key, the noise input or None), one jitted call."""
        if self.noise == CHAIN:
            steps = self.session.get_inputs()[1].shape[0] - 1  # the graph's T
            return partial(_chain_draws, shape=(self.samples, action_dim), num_steps=steps)
        if self.noise == GAUSSIAN:
            return partial(_gaussian_draws, shape=(1, action_dim))
        return _no_draws

    @property
    def sampled(self) -> bool:
        """The file holds SAC's sampled policy: actions are drawn from it."""
        return self.noise == GAUSSIAN

    def frozen(self) -> OnnxAgent:
        return self

    def act(self, obs: np.ndarray, key: jax.Array, explore: bool = False) -> tuple:
        if explore:
            raise ConfigError("the exported policy has no exploration noise")
        next_key, noise = self._draw(key)
        inputs = {OBS_INPUT: np.asarray(obs, np.float32)[None]}
        if noise is not None:
            inputs[NOISE_INPUT] = np.asarray(noise)
        (action,) = self.session.run([ACTION_OUTPUT], inputs)
        return to_unit_range(action[0], self.policy.low, self.policy.high), next_key

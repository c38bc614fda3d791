"""The Python API: a config from field names, training that returns the policy, loading one.

    import qscore
    config = qscore.make_config("qsm", env="Pendulum-v1", total_steps=5_000)
    result = qscore.train(config)         # no run_dir: nothing is kept on disk
    action = result.policy(observation)   # in the environment's own units
    policy = qscore.load("runs/pendulum") # a saved run's newest checkpoint

See docs/api.md.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from qscore.config import (
    ALGORITHM_CONFIGS,
    DEFAULT_PRESETS,
    RunConfig,
    TrainConfig,
    validate,
)
from qscore.config import make_config as make_preset_config
from qscore.envs import to_task_units
from qscore.errors import ConfigError


def make_config(
    algo: str = "qsm", preset: str | None = None, env: str = "Hopper-v4", **values: Any
) -> RunConfig:
    """A validated run config: ``algo``'s ``preset`` (default: the CLI's default for that
    algorithm) with any field of the algorithm's config or of :class:`TrainConfig` set by
    name, e.g. ``make_config("qsm", env="Pendulum-v1", total_steps=5_000, utd=2)``."""
    if algo not in ALGORITHM_CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {sorted(ALGORITHM_CONFIGS)}")
    agent_names = {f.name for f in fields(ALGORITHM_CONFIGS[algo])}
    train_names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - agent_names - train_names)
    if unknown:
        raise ConfigError(f"unknown {algo} or training field(s): {', '.join(unknown)}")
    agent = {k: v for k, v in values.items() if k in agent_names}
    train = {k: v for k, v in values.items() if k in train_names}
    return make_preset_config(
        preset or DEFAULT_PRESETS[algo], agent, {"env_id": env, **train}, algo
    )


@partial(jax.jit, static_argnames=("explore",))
def _actions(agent: Any, obs: jax.Array, keys: jax.Array, explore: bool) -> jax.Array:
    return jax.vmap(lambda o, k: agent.policy(o, k, explore)[0])(obs, keys)


@dataclass(frozen=True)
class Policy:
    """A trained agent's policy, callable on one observation or a batch; actions come back
    in the environment's own units (the agent acts in [-1, 1]).

    ``explore`` adds the training-time exploration noise. For QSM, :meth:`with_options`
    changes the chain's sampling (``best_of_n_eval``, ``sampling_temperature``, ...).
    """

    agent: Any
    low: np.ndarray
    """The environment's action bounds (``action_space.low``)."""
    high: np.ndarray
    obs_dim: int
    explore: bool = False

    def __call__(
        self, obs: Any, key: jax.Array | None = None, seed: int | None = None
    ) -> np.ndarray:
        """Actions for ``obs`` (shape (obs_dim,) or (batch, obs_dim)); the noise comes from
        ``key``, else from ``seed`` (default 0), so equal calls give equal actions."""
        obs = np.asarray(obs, np.float32)
        batch = obs[None] if obs.ndim == 1 else obs
        if key is None:
            key = jax.random.PRNGKey(0 if seed is None else seed)
        keys = jax.random.split(key, len(batch))
        unit = np.asarray(_actions(self.agent, batch, keys, self.explore))
        actions = to_task_units(unit, self.low, self.high)
        return actions[0] if obs.ndim == 1 else actions

    @property
    def algo(self) -> str:
        """The agent's algorithm: ``qsm``, ``sac`` or ``td3``."""
        return _algo_of(self.agent.config)

    def with_options(self, **agent_fields: Any) -> Policy:
        """The same parameters acting with other sampling options of the agent's config."""
        config = replace(self.agent.config, **agent_fields)
        validate(RunConfig(agent=config, algo=self.algo))
        return replace(self, agent=self.agent.replace(config=config))


def _algo_of(agent_config: Any) -> str:
    return next(name for name, cls in ALGORITHM_CONFIGS.items() if isinstance(agent_config, cls))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns."""

    policy: Policy
    summary: dict[str, Any]
    """As in the run's summary.json."""
    run_dir: Path | None
    """Where the run was written; None when nothing was kept."""

    @property
    def agent(self) -> Any:
        """The trained agent (a pytree: parameters, optimiser states, config)."""
        return self.policy.agent


def train(
    config: RunConfig,
    run_dir: str | Path | None = None,
    env: gym.Env | Any | None = None,
    *,
    progress: bool = False,
) -> TrainResult:
    """Train one agent as ``config`` says and return it with its policy and summary.

    ``env`` may be a Gymnasium env or a callable that makes one (for tasks that are not
    registered ids); by default the env is made from ``config.train.env_id``. An env
    instance is copied (``copy.deepcopy``) for evaluation. Without ``run_dir`` the run goes
    to a temporary directory that is deleted before returning.
    """
    factory = _env_factory(env)
    if run_dir is not None:
        return _train_into(config, Path(run_dir), factory, progress)
    with tempfile.TemporaryDirectory(prefix="qscore-") as scratch:
        result = _train_into(config, Path(scratch) / "run", factory, progress)
    return dataclasses.replace(result, run_dir=None)


def _train_into(config: RunConfig, run_dir: Path, factory: Any, progress: bool) -> TrainResult:
    from qscore.training import train_seeds

    summary = train_seeds(
        config, [config.train.seed], run_dir, progress=progress, env_factory=factory
    )[0]
    policy = _newest_policy(config, run_dir, factory)
    return TrainResult(policy, summary, run_dir)


def load(run_dir: str | Path, env: gym.Env | Any | None = None) -> Policy:
    """The policy of a run's newest checkpoint (a single-seed run, or one ``seed_S/`` of a
    multi-seed run). ``env`` as in :func:`train`, for runs of unregistered tasks."""
    from qscore.rundir import read_config

    run_dir = Path(run_dir)
    config = RunConfig.from_dict(read_config(run_dir))
    return _newest_policy(config, run_dir, _env_factory(env))


def _env_factory(env: Any) -> Any:
    """A callable that makes a fresh env, or None to make it from the config's id."""
    if env is None:
        return None
    if isinstance(env, gym.Env):
        return partial(copy.deepcopy, env)
    if callable(env):
        return env
    raise ConfigError(f"env must be a Gymnasium env or a callable that makes one, got {env!r}")


def _newest_policy(config: RunConfig, run_dir: Path, factory: Any) -> Policy:
    """The policy of ``run_dir``'s newest checkpoint, with the task's action bounds."""
    from qscore.checkpoint import latest_checkpoint
    from qscore.envs import make_env, wrap_env

    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint")
    tc = config.train
    if factory is None:
        env = make_env(tc.env_id, action_repeat=tc.action_repeat)
    else:
        env = wrap_env(factory(), tc.env_id, action_repeat=tc.action_repeat)
    policy, _ = _restored_policy(config, checkpoint, env)
    env.close()
    return policy


def _restored_policy(config: RunConfig, checkpoint: Path, env: gym.Env) -> tuple[Policy, int]:
    """The policy saved in ``checkpoint`` for ``env``'s task, and the checkpoint's step."""
    from qscore.checkpoint import restore_agent
    from qscore.envs import original_action_bounds, space_dims

    dims, (low, high) = space_dims(env), original_action_bounds(env)
    agent, step = restore_agent(config, *dims, checkpoint)
    return Policy(agent, low, high, dims[0]), step


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate_run` returns."""

    algo: str
    env_id: str
    step: int
    """The training step of the checkpoint evaluated."""
    returns: np.ndarray
    """One return per episode; episode i starts from ``env.reset(seed=seed + i)``."""
    best_of_n: int
    """Chain samples the action was picked from by Q (QSM; 1 for one sample, SAC and TD3)."""
    runtime: str
    """``"jax"``, or ``"onnxruntime"`` for a policy file."""
    sampled: bool
    """The policy file holds SAC's sampled policy, so actions were drawn from it."""
    video: Path | None = None
    """The video of the first episode, if one was written."""
    video_frames: int = 0


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 10,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    video: str | Path | None = None,
    best_of_n: int | None = None,
    policy_file: str | Path | None = None,
) -> EvalResult:
    """Evaluation episodes of a single-seed run's ``checkpoint`` (default: its newest) on the
    run's task, as ``qscore eval`` runs them: no exploration noise, one JAX key from
    ``seed``. ``best_of_n`` (QSM only) overrides the run's ``best_of_n_eval``; ``video``
    names an .mp4 file for the first episode; ``policy_file`` is an ONNX file from
    :func:`qscore.export.export_onnx`, then run by onnxruntime instead of JAX."""
    from qscore.checkpoint import latest_checkpoint
    from qscore.envs import make_env
    from qscore.evaluate import run_episodes

    run_dir = Path(run_dir)
    config = _eval_config(run_dir, episodes, best_of_n)
    tc = config.train
    render_mode = "rgb_array" if video else None
    env = make_env(tc.env_id, render_mode=render_mode, action_repeat=tc.action_repeat)
    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint")
    policy, step = _restored_policy(config, Path(checkpoint), env)
    agent: Any = policy.agent
    runtime, sampled, samples = "jax", False, getattr(config.agent, "best_of_n_eval", 1)
    if policy_file is not None:
        agent = _onnx_agent(Path(policy_file), policy, best_of_n)
        runtime, sampled, samples = "onnxruntime", agent.sampled, agent.samples
    frames: list[np.ndarray] | None = [] if video else None
    returns = run_episodes(agent, env, episodes, seed, jax.random.PRNGKey(seed), frames)
    if video:
        _write_video(Path(video), frames, env.metadata.get("render_fps", 30))
    env.close()
    return EvalResult(
        config.algo, tc.env_id, step, returns, samples, runtime, sampled,
        Path(video) if video else None, len(frames or []),
    )  # fmt: skip


def _eval_config(run_dir: Path, episodes: int, best_of_n: int | None) -> RunConfig:
    """The run's config for :func:`evaluate_run`, with ``best_of_n`` if given; the arguments
    are checked before any env or agent is made."""
    from qscore.rundir import RunDirError, read_config, run_seeds

    if episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    if run_seeds(run_dir):
        raise RunDirError(f"{run_dir} holds several seeds; evaluate one, e.g. its seed_S/")
    config = RunConfig.from_dict(read_config(run_dir))
    if best_of_n is None:
        return config
    if not hasattr(config.agent, "best_of_n_eval"):
        raise ConfigError(f"--best-of-n needs a qsm run; {run_dir} is {config.algo}")
    return validate(replace(config, agent=replace(config.agent, best_of_n_eval=best_of_n)))


def _onnx_agent(path: Path, policy: Policy, best_of_n: int | None) -> Any:
    """The exported policy at ``path`` as an agent for ``run_episodes``; a ``best_of_n``
    other than the file's is an error (the file fixes N)."""
    from qscore.export import OnnxAgent

    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    onnx_agent = OnnxAgent(path, policy)
    if best_of_n is not None and best_of_n != onnx_agent.samples:
        raise ConfigError(
            f"{path} picks the best of {onnx_agent.samples} samples; drop --best-of-n or"
            f" export again with --best-of-n {best_of_n}"
        )
    return onnx_agent


def _write_video(path: Path, frames: list[np.ndarray] | None, fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)

"""The training loop: warm-up, exploration, replay, updates, evaluation, logs and checkpoints.

A run can stop at any moment and continue exactly: every checkpoint holds the agent, the
replay buffer and a :class:`LoopState` (counters, keys, the host RNG and the actions of the
episode in progress). Training episodes start from seeded resets, so on resume the episode
in progress is rebuilt by resetting with its seed and replaying its actions.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from qscore.agents.qsm import QSMAgent, create_qsm, update
from qscore.atomic import atomic_write_json
from qscore.checkpoint import (
    latest_checkpoint,
    load_run_checkpoint,
    save_run_checkpoint,
)
from qscore.config import RunConfig
from qscore.envs import make_env, space_dims
from qscore.evaluate import run_episodes
from qscore.logs import CsvLog, TensorBoard
from qscore.replay import ReplayBuffer

EVAL_SEED_OFFSET = 1_000_003
"""The eval env's seeds start at seed + this, far from the training env's seeds."""

PACKAGES = ("qscore", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco")
EVAL_COLUMNS = ["step", "return_mean", "return_std", "episodes", "wall_time"]


class RunDirError(ValueError):
    """The run directory cannot be used (it exists and holds a run, or holds none to resume)."""


class TrainingDiverged(RuntimeError):
    """A loss, Q value, parameter, observation or reward became non-finite."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training after a checkpoint was written."""


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the qscore source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def run_metadata() -> dict[str, Any]:
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax_backend": jax.default_backend(),
        "command": sys.argv,
    }


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create ``run_dir``; refuse one that already holds files unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"run directory {run_dir} already exists and is not empty; pass --resume to "
                "continue it, --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def episode_seed(seed: int, episode: int) -> int:
    """Seed of the reset that starts training episode ``episode`` (0-based)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


@dataclass
class LoopState:
    """Everything besides the agent and the replay buffer needed to continue a run."""

    seed: int
    step: int = 0
    episodes: int = 0
    episode_return: float = 0.0
    episode_actions: list[list[float]] = field(default_factory=list)
    window_returns: list[float] = field(default_factory=list)
    best_eval: dict[str, float] | None = None
    last_eval: dict[str, float] | None = None
    elapsed_s: float = 0.0
    host_rng_state: dict[str, Any] = field(default_factory=dict)
    act_key: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def new_loop_state(seed: int) -> LoopState:
    root = jax.random.PRNGKey(seed)
    return LoopState(
        seed=seed,
        host_rng_state=np.random.default_rng(seed).bit_generator.state,
        act_key=np.asarray(jax.random.fold_in(root, 1)).tolist(),
    )


def evaluation_key(seed: int, step: int) -> jax.Array:
    """The key of the evaluation at ``step``: a function of the seed and step only, so that
    extra evaluations (say, at the end of a run later extended) change no other one."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), step)


def _key(data: list[int]) -> jax.Array:
    return jax.numpy.asarray(np.asarray(data, np.uint32))


def _check_finite_env(obs: np.ndarray, reward: float, step: int) -> None:
    if not np.all(np.isfinite(obs)):
        raise TrainingDiverged(f"the environment returned a non-finite observation at step {step}")
    if not math.isfinite(reward):
        raise TrainingDiverged(f"the environment returned a non-finite reward at step {step}")


def collect_transition(
    env: Any, obs: np.ndarray, action: np.ndarray, buffer: ReplayBuffer
) -> tuple[np.ndarray, float, bool]:
    """Step ``env`` and store (s, a, r, s', terminated).

    Only ``terminated`` stops bootstrapping: a time-limit ``truncated`` end is stored as not
    terminated, with the true final observation as s'. Returns s', the reward and whether
    the episode ended (the caller resets the env).
    """
    next_obs, reward, terminated, truncated, _ = env.step(action)
    next_obs = np.asarray(next_obs, np.float32)
    buffer.add(obs, action, float(reward), next_obs, bool(terminated))
    return next_obs, float(reward), bool(terminated or truncated)


def start_episode(env: Any, state: LoopState) -> np.ndarray:
    """Reset ``env`` for episode ``state.episodes`` and replay the actions already taken in it.

    For a new episode there are none; after a resume this rebuilds the env's state exactly
    for deterministic environments.
    """
    obs, _ = env.reset(seed=episode_seed(state.seed, state.episodes))
    for action in state.episode_actions:
        obs, *_ = env.step(np.asarray(action, np.float32))
    return np.asarray(obs, np.float32)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jax.numpy.all(jax.numpy.stack([jax.numpy.all(jax.numpy.isfinite(x)) for x in leaves]))


@contextmanager
def _stop_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT and SIGTERM into a request to stop after the current step."""
    requested: dict[str, int] = {}
    handlers = {}

    def request(signum: int, frame: Any) -> None:
        requested["signal"] = signum

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, request)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield requested
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def train(
    config: RunConfig, run_dir: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Start a new run of QSM as ``config`` says, in ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    tc = config.train
    env = make_env(tc.env_id, seed=tc.seed)
    obs_dim, action_dim = space_dims(env)
    buffer = ReplayBuffer(obs_dim, action_dim, min(tc.buffer_size, tc.total_steps))
    prepare_run_dir(run_dir, overwrite)
    atomic_write_json(run_dir / "config.json", {**config.to_dict(), **run_metadata()})
    agent = create_qsm(config.agent, obs_dim, action_dim, tc.seed)
    return _run(config, run_dir, env, agent, buffer, new_loop_state(tc.seed), progress)


def resume(config: RunConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest checkpoint, up to ``config``'s steps.

    ``config`` must be the run's own (see :func:`qscore.cli`), except ``total_steps``,
    which may be raised to extend a run.
    """
    run_dir = Path(run_dir)
    tc = config.train
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunDirError(f"{run_dir} has no checkpoint to resume from")
    env = make_env(tc.env_id, seed=tc.seed)
    obs_dim, action_dim = space_dims(env)
    template = create_qsm(config.agent, obs_dim, action_dim, tc.seed)
    buffer = ReplayBuffer(obs_dim, action_dim, min(tc.buffer_size, tc.total_steps))
    agent, loop, saved_buffer = load_run_checkpoint(checkpoint, template)
    if saved_buffer is None:
        raise RunDirError(f"{checkpoint} holds no replay buffer and cannot be resumed")
    buffer.load_state(saved_buffer)
    state = LoopState(**loop)
    if state.step >= tc.total_steps:
        raise RunDirError(
            f"{run_dir} already ran {state.step} steps; pass a larger --steps to extend it"
        )
    return _run(config, run_dir, env, agent, buffer, state, progress)


def _run(
    config: RunConfig,
    run_dir: Path,
    env: Any,
    agent: QSMAgent,
    buffer: ReplayBuffer,
    state: LoopState,
    progress: bool,
) -> dict[str, Any]:
    tc, ac = config.train, config.agent
    eval_env = make_env(tc.env_id, seed=tc.seed + EVAL_SEED_OFFSET)
    action_dim = space_dims(env)[1]
    host_rng = np.random.default_rng()
    host_rng.bit_generator.state = state.host_rng_state
    act_key = _key(state.act_key)
    start_step = state.step
    train_log = CsvLog.resume(run_dir / "train.csv", start_step)
    eval_log = CsvLog.resume(run_dir / "eval.csv", start_step, EVAL_COLUMNS)
    board = TensorBoard(run_dir / "tensorboard", purge_step=start_step + 1 if start_step else None)
    clock_start = time.perf_counter() - state.elapsed_s
    window_start, window_steps = time.perf_counter(), 0
    metrics: dict[str, jax.Array] = {}
    status = "completed"
    obs = start_episode(env, state)

    def save(step: int) -> None:
        state.step = step
        state.elapsed_s = time.perf_counter() - clock_start
        state.host_rng_state = host_rng.bit_generator.state
        state.act_key = np.asarray(act_key).tolist()
        if not bool(_all_finite(agent)):
            raise TrainingDiverged(f"non-finite network parameters at step {step}")
        save_run_checkpoint(run_dir, step, agent, buffer, state.to_json())

    def evaluate(step: int) -> None:
        returns = run_episodes(
            agent,
            eval_env,
            tc.eval_episodes,
            tc.seed + EVAL_SEED_OFFSET,
            evaluation_key(tc.seed, step),
        )
        result = {
            "step": step,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "episodes": len(returns),
            "wall_time": time.perf_counter() - clock_start,
        }
        eval_log.append(result)
        board.scalars("eval", {"return_mean": result["return_mean"]}, step)
        state.last_eval = result
        if state.best_eval is None or result["return_mean"] > state.best_eval["return_mean"]:
            state.best_eval = {"step": step, "return_mean": result["return_mean"]}
        bar.set_postfix(eval_return=f"{result['return_mean']:.1f}")

    bar = tqdm(
        total=tc.total_steps,
        initial=start_step,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    step = start_step
    try:
        with _stop_signals() as stop:
            for step in range(start_step + 1, tc.total_steps + 1):
                if step <= tc.warmup_steps:
                    action = host_rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
                else:
                    action, act_key = agent.act(obs, act_key, explore=True)
                next_obs, reward, episode_ended = collect_transition(env, obs, action, buffer)
                _check_finite_env(next_obs, reward, step)
                state.episode_return += reward
                state.episode_actions.append(np.asarray(action).tolist())
                if episode_ended:
                    state.window_returns.append(state.episode_return)
                    state.episodes += 1
                    state.episode_return, state.episode_actions = 0.0, []
                    obs = start_episode(env, state)
                else:
                    obs = next_obs

                if step > tc.warmup_steps:
                    batches = buffer.sample(host_rng, (ac.utd, ac.batch_size))
                    agent, metrics = update(agent, batches)

                window_steps += 1
                bar.update(1)
                if step % tc.log_every == 0 or step == tc.total_steps:
                    now = time.perf_counter()
                    row: dict[str, Any] = {"step": step, "episodes": state.episodes}
                    row.update(_episode_stats(state.window_returns))
                    scalars = {name: float(value) for name, value in metrics.items()}
                    _finite_or_raise(scalars, step)
                    row.update(scalars)
                    row["steps_per_sec"] = window_steps / max(now - window_start, 1e-9)
                    row["wall_time"] = now - clock_start
                    train_log.append(row)
                    board.scalars("train", {k: v for k, v in row.items() if k != "step"}, step)
                    window_start, window_steps, state.window_returns = now, 0, []
                if (tc.eval_every and step % tc.eval_every == 0) or step == tc.total_steps:
                    evaluate(step)
                periodic = tc.checkpoint_every and step % tc.checkpoint_every == 0
                if periodic or step == tc.total_steps or stop:
                    save(step)
                if stop and step < tc.total_steps:
                    name = signal.Signals(stop["signal"]).name
                    status = f"interrupted by {name} at step {step}"
                    raise TrainingInterrupted(
                        f"{name} received: stopped at step {step} with a checkpoint; continue "
                        f"with: qscore train --resume {run_dir}"
                    )
    except TrainingDiverged as error:
        last = latest_checkpoint(run_dir)
        status = f"diverged: {error}"
        raise TrainingDiverged(
            f"{error}; training stopped. Last good checkpoint: {last or 'none'}"
        ) from None
    except TrainingInterrupted:
        raise
    except BaseException as error:
        status = f"stopped at step {step}: {type(error).__name__}"
        raise
    finally:
        bar.close()
        board.close()
        summary = {
            "status": status,
            "env_id": tc.env_id,
            "final_eval": state.last_eval,
            "best_eval": state.best_eval,
            "steps": step,
            "episodes": state.episodes,
            "total_time_s": time.perf_counter() - clock_start,
        }
        atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _finite_or_raise(values: dict[str, float], step: int) -> None:
    bad = sorted(name for name, value in values.items() if not math.isfinite(value))
    if bad:
        raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}")


def _episode_stats(returns: list[float]) -> dict[str, float]:
    if not returns:
        return {"episode_return_mean": math.nan, "episode_return_last": math.nan}
    return {"episode_return_mean": float(np.mean(returns)), "episode_return_last": returns[-1]}

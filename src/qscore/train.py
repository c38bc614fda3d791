"""The training loop: warm-up, exploration, replay, updates, evaluation, logs and checkpoints.

A run can stop at any moment and continue exactly: every checkpoint holds the agent, the
replay buffer and a :class:`LoopState` (counters, keys, the host RNG and the actions of the
episode in progress). Training episodes start from seeded resets, so on resume the episode
in progress is rebuilt by resetting with its seed and replaying its actions.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np
from tqdm import tqdm

from qscore.agents import get_algorithm
from qscore.atomic import atomic_write_json
from qscore.checkpoint import (
    checkpoint_dir,
    checkpoint_step,
    latest_checkpoint,
    load_run_checkpoint,
    prune_replay,
    save_run_checkpoint,
    step_name,
)
from qscore.config import ConfigError, RunConfig
from qscore.envs import make_env, space_dims
from qscore.evaluate import critic_error, run_episodes
from qscore.logs import CsvLog, TensorBoard
from qscore.replay import Batch, ReplayBuffer

EVAL_SEED_OFFSET = 1_000_003
"""The eval env's seeds start at seed + this, far from the training env's seeds."""

PACKAGES = ("qscore", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco")
EVAL_COLUMNS = ["step", "return_mean", "return_std", "episodes", "wall_time"]
SEEDS_FILE = "seeds.json"
"""Marks a multi-seed run directory: ``{"seeds": [...], "algo": ...}``."""


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


RUN_DIR_HINT = "pass --resume to continue it, --overwrite to replace it, or choose another --out"


def check_run_dir(run_dir: Path, overwrite: bool, hint: str = RUN_DIR_HINT) -> None:
    """Refuse a ``run_dir`` that is a file, or that already holds files unless ``overwrite``
    (the error ends with ``hint``, what the user can do instead)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(f"run directory {run_dir} already exists and is not empty; {hint}")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create ``run_dir`` after :func:`check_run_dir` (emptying it when ``overwrite``)."""
    check_run_dir(run_dir, overwrite)
    if run_dir.is_dir() and any(run_dir.iterdir()):
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


def diagnostics_key(seed: int, step: int) -> jax.Array:
    """The key of the logged policy diagnostics at ``step`` (independent of all other keys)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 3), step)


DIAGNOSTIC_STATES = 32
"""States of the last update batch at which the policy diagnostics are measured."""


def _key(data: list[int]) -> jax.Array:
    return jax.numpy.asarray(np.asarray(data, np.uint32))


def _check_finite_env(obs: np.ndarray, reward: float, step: int, where: str = "") -> None:
    if not np.all(np.isfinite(obs)):
        raise TrainingDiverged(
            f"the environment returned a non-finite observation at step {step}{where}"
        )
    if not math.isfinite(reward):
        raise TrainingDiverged(
            f"the environment returned a non-finite reward at step {step}{where}"
        )


def collect_transition(
    env: Any, obs: np.ndarray, action: np.ndarray, buffer: ReplayBuffer
) -> tuple[np.ndarray, float, bool]:
    """Step ``env`` and store (s, a, r, s', terminated, episode end).

    Only ``terminated`` stops bootstrapping: a time-limit ``truncated`` end is stored as not
    terminated, with the true final observation as s' (and as an episode end, which stops
    n-step returns). Returns s', the reward and whether
    the episode ended (the caller resets the env).
    """
    next_obs, reward, terminated, truncated, _ = env.step(action)
    next_obs = np.asarray(next_obs, np.float32)
    ended = bool(terminated or truncated)
    buffer.add(obs, action, float(reward), next_obs, bool(terminated), ended)
    return next_obs, float(reward), ended


def start_episode(env: Any, state: LoopState) -> np.ndarray:
    """Reset ``env`` for episode ``state.episodes`` and replay the actions already taken in it.

    For a new episode there are none; after a resume this rebuilds the env's state exactly
    for deterministic environments.
    """
    obs, _ = env.reset(seed=episode_seed(state.seed, state.episodes))
    for action in state.episode_actions:
        obs, *_ = env.step(np.asarray(action, np.float32))
    return np.asarray(obs, np.float32)


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


def _stacked(trees: list[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *leaves: jax.numpy.stack(leaves), *trees)


def _member(tree: Any, index: int) -> Any:
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


@partial(jax.jit, static_argnames=("update_fn",))
def _update_seeds(update_fn: Any, agents: Any, batches: Batch) -> tuple[Any, dict]:
    """One update of every seed's agent: ``update_fn`` vmapped over the leading seed axis."""
    return jax.vmap(update_fn)(agents, batches)


@partial(jax.jit, static_argnames=("explore",))
def _act_seeds(agents: Any, obs: jax.Array, keys: jax.Array, explore: bool) -> tuple:
    """One action per seed from that seed's agent and observation."""
    return jax.vmap(lambda agent, o, k: agent.policy(o, k, explore))(agents, obs, keys)


@partial(jax.jit, static_argnames=("diagnose_fn",))
def _diagnose_seeds(diagnose_fn: Any, agents: Any, obs: jax.Array, keys: jax.Array) -> dict:
    """The algorithm's policy diagnostics for every seed (obs and keys with a seed axis)."""
    return jax.vmap(diagnose_fn)(agents, obs, keys)


@dataclass
class SeedRun:
    """The host-side objects of one seed of a run."""

    config: RunConfig
    run_dir: Path
    env: Any
    eval_env: Any
    buffer: ReplayBuffer
    state: LoopState
    host_rng: np.random.Generator = field(default_factory=np.random.default_rng)
    obs: np.ndarray | None = None
    train_log: CsvLog | None = None
    eval_log: CsvLog | None = None
    board: TensorBoard | None = None


def _scaled(reward: float, factor: float) -> float:
    return factor * reward


def seed_config(config: RunConfig, seed: int) -> RunConfig:
    return replace(config, train=replace(config.train, seed=seed))


def seed_dirs(run_dir: Path, seeds: list[int]) -> list[Path]:
    return [run_dir / f"seed_{seed}" for seed in seeds]


def _new_seed_run(config: RunConfig, seed: int, run_dir: Path, state: LoopState) -> SeedRun:
    """Envs and an empty replay buffer for one seed of ``config``."""
    cfg = seed_config(config, seed)
    tc = cfg.train
    env = make_env(tc.env_id, seed=seed, action_repeat=tc.action_repeat)
    if tc.reward_scale != 1.0:
        env = gym.wrappers.TransformReward(env, partial(_scaled, factor=tc.reward_scale))
    eval_env = make_env(tc.env_id, seed=seed + EVAL_SEED_OFFSET, action_repeat=tc.action_repeat)
    buffer = ReplayBuffer(*space_dims(env), min(tc.buffer_size, tc.total_steps))
    return SeedRun(cfg, run_dir, env, eval_env, buffer, state)


def train(
    config: RunConfig, run_dir: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Start a new single-seed run as ``config`` says, in ``run_dir``; returns its summary."""
    return train_seeds(
        config, [config.train.seed], run_dir, overwrite=overwrite, progress=progress
    )[0]


def train_seeds(
    config: RunConfig,
    seeds: list[int],
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train one independent agent per seed in one process, their updates vmapped together.

    One seed writes its run to ``run_dir``; several write ``run_dir/seed_S/`` each, every one
    in the format of a single-seed run, plus ``run_dir/seeds.json``. Seed i's results are
    those of a single-seed run with seed i.
    """
    run_dir = Path(run_dir)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"--seeds must be distinct, got {seeds}")
    multi = len(seeds) > 1
    dirs = seed_dirs(run_dir, seeds) if multi else [run_dir]
    algorithm = get_algorithm(config.algo)
    runs, agents = [], []
    for seed, folder in zip(seeds, dirs, strict=True):
        run = _new_seed_run(config, seed, folder, new_loop_state(seed))
        runs.append(run)
        agents.append(algorithm.create(run.config.agent, *space_dims(run.env), seed))
    prepare_run_dir(run_dir, overwrite)
    if multi:
        atomic_write_json(run_dir / SEEDS_FILE, {"seeds": seeds, "algo": config.algo})
    for run in runs:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.run_dir / "config.json", {**run.config.to_dict(), **run_metadata()})
    return _run(config, runs, _stacked(agents), progress)


def run_seeds(run_dir: str | Path) -> list[int] | None:
    """The seeds of a multi-seed run directory, or None for a single-seed one."""
    path = Path(run_dir) / SEEDS_FILE
    return json.loads(path.read_text())["seeds"] if path.is_file() else None


def resume(config: RunConfig, run_dir: str | Path, *, progress: bool = True) -> list[dict]:
    """Continue a run (single- or multi-seed) from its newest checkpoint common to all seeds.

    ``config`` must be the run's own (see :mod:`qscore.cli`), except ``total_steps``,
    which may be raised to extend a run. Returns the summary of each seed.
    """
    run_dir = Path(run_dir)
    seeds = run_seeds(run_dir)
    dirs = seed_dirs(run_dir, seeds) if seeds else [run_dir]
    seeds = seeds or [config.train.seed]
    latest = [latest_checkpoint(folder) for folder in dirs]
    if any(checkpoint is None for checkpoint in latest):
        raise RunDirError(f"{run_dir} has no checkpoint to resume from")
    common_step = min(checkpoint_step(checkpoint) for checkpoint in latest)
    if common_step >= config.train.total_steps:
        raise RunDirError(
            f"{run_dir} already ran {common_step} steps; pass a larger --steps to extend it"
        )
    algorithm = get_algorithm(config.algo)
    runs, agents = [], []
    for seed, folder in zip(seeds, dirs, strict=True):
        run = _new_seed_run(config, seed, folder, new_loop_state(seed))
        template = algorithm.create(run.config.agent, *space_dims(run.env), seed)
        checkpoint = checkpoint_dir(folder) / step_name(common_step)
        agent, loop, saved_buffer = load_run_checkpoint(checkpoint, template)
        if saved_buffer is None:
            raise RunDirError(f"{checkpoint} holds no replay buffer and cannot be resumed")
        run.buffer.load_state(saved_buffer)
        run.state = LoopState(**loop)
        runs.append(run)
        agents.append(agent)
    return _run(config, runs, _stacked(agents), progress)


def _run(config: RunConfig, runs: list[SeedRun], agents: Any, progress: bool) -> list[dict]:
    """The loop, for every seed at once: all seeds share the step counter."""
    tc, ac = config.train, config.agent
    algorithm = get_algorithm(config.algo)
    action_dim = space_dims(runs[0].env)[1]
    start_step = runs[0].state.step
    for run in runs:
        run.host_rng.bit_generator.state = run.state.host_rng_state
        run.train_log = CsvLog.resume(run.run_dir / "train.csv", start_step)
        run.eval_log = CsvLog.resume(run.run_dir / "eval.csv", start_step, EVAL_COLUMNS)
        run.board = TensorBoard(
            run.run_dir / "tensorboard", purge_step=start_step + 1 if start_step else None
        )
        run.obs = start_episode(run.env, run.state)
    act_keys = jax.numpy.stack([_key(run.state.act_key) for run in runs])
    clock_start = time.perf_counter() - runs[0].state.elapsed_s
    window_start, window_steps = time.perf_counter(), 0
    metrics: dict[str, jax.Array] = {}
    batches: Batch | None = None
    statuses = ["completed"] * len(runs)

    def save(step: int) -> None:
        finite = np.asarray(_all_finite_seeds(agents))
        for i in range(len(runs)):
            if not finite[i]:
                raise TrainingDiverged(f"non-finite network parameters at step {step}{tag(i)}")
        for i, run in enumerate(runs):
            run.state.step = step
            run.state.elapsed_s = time.perf_counter() - clock_start
            run.state.host_rng_state = run.host_rng.bit_generator.state
            run.state.act_key = np.asarray(act_keys[i]).tolist()
            save_run_checkpoint(
                run.run_dir, step, _member(agents, i), run.buffer, run.state.to_json()
            )
        for run in runs:  # only once every seed has its new checkpoint
            prune_replay(run.run_dir)

    def tag(i: int) -> str:
        return f" (seed {runs[i].state.seed})" if len(runs) > 1 else ""

    def evaluate(step: int) -> None:
        for i, run in enumerate(runs):
            agent, trajectories = _member(agents, i), []
            returns = run_episodes(
                agent,
                run.eval_env,
                tc.eval_episodes,
                run.state.seed + EVAL_SEED_OFFSET,
                evaluation_key(run.state.seed, step),
                trajectories=trajectories,
            )
            result = {
                "step": step,
                "return_mean": float(returns.mean()),
                "return_std": float(returns.std()),
                "episodes": len(returns),
                "wall_time": time.perf_counter() - clock_start,
                **critic_error(agent, trajectories),
            }
            run.eval_log.append(result)
            logged = ("return_mean", "q_bias", "q_relative_error")
            run.board.scalars("eval", {k: result[k] for k in logged if k in result}, step)
            run.state.last_eval = result
            best = run.state.best_eval
            if best is None or result["return_mean"] > best["return_mean"]:
                run.state.best_eval = {"step": step, "return_mean": result["return_mean"]}
        shown = np.mean([run.state.last_eval["return_mean"] for run in runs])
        bar.set_postfix(eval_return=f"{shown:.1f}")

    def log(step: int) -> None:
        nonlocal window_start, window_steps, metrics
        now = time.perf_counter()
        if algorithm.diagnose is not None and batches is not None:
            keys = jax.numpy.stack([diagnostics_key(run.state.seed, step) for run in runs])
            obs = batches.obs[:, 0, :DIAGNOSTIC_STATES]
            metrics = {**metrics, **_diagnose_seeds(algorithm.diagnose, agents, obs, keys)}
        for i, run in enumerate(runs):
            row: dict[str, Any] = {"step": step, "episodes": run.state.episodes}
            row.update(_episode_stats(run.state.window_returns))
            scalars = {name: float(value[i]) for name, value in metrics.items()}
            bad = sorted(name for name, value in scalars.items() if not math.isfinite(value))
            if bad:
                raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}{tag(i)}")
            row.update(scalars)
            row["steps_per_sec"] = window_steps / max(now - window_start, 1e-9)
            row["wall_time"] = now - clock_start
            run.train_log.append(row)
            run.board.scalars("train", {k: v for k, v in row.items() if k != "step"}, step)
            run.state.window_returns = []
        window_start, window_steps = now, 0

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
                    actions = [
                        run.host_rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
                        for run in runs
                    ]
                else:
                    obs = np.stack([run.obs for run in runs])
                    batch_actions, act_keys = _act_seeds(agents, obs, act_keys, True)
                    actions = list(np.asarray(batch_actions))
                for i, run in enumerate(runs):
                    next_obs, reward, ended = collect_transition(
                        run.env, run.obs, actions[i], run.buffer
                    )
                    _check_finite_env(next_obs, reward, step, tag(i))
                    run.state.episode_return += reward
                    run.state.episode_actions.append(actions[i].tolist())
                    if ended:
                        run.state.window_returns.append(run.state.episode_return)
                        run.state.episodes += 1
                        run.state.episode_return, run.state.episode_actions = 0.0, []
                        run.obs = start_episode(run.env, run.state)
                    else:
                        run.obs = next_obs

                if step > tc.warmup_steps:
                    batches = _stacked_batches(
                        [
                            run.buffer.sample(
                                run.host_rng,
                                (ac.utd, ac.batch_size),
                                ac.n_step,
                                ac.discount,
                                ac.n_step_fraction,
                            )
                            for run in runs
                        ]
                    )
                    agents, metrics = _update_seeds(algorithm.update, agents, batches)

                window_steps += 1
                bar.update(1)
                if step % tc.log_every == 0 or step == tc.total_steps or stop:
                    log(step)
                if (tc.eval_every and step % tc.eval_every == 0) or step == tc.total_steps:
                    evaluate(step)
                periodic = tc.checkpoint_every and step % tc.checkpoint_every == 0
                if periodic or step == tc.total_steps or stop:
                    save(step)
                if stop and step < tc.total_steps:
                    name = signal.Signals(stop["signal"]).name
                    statuses = [f"interrupted by {name} at step {step}"] * len(runs)
                    where = runs[0].run_dir if len(runs) == 1 else runs[0].run_dir.parent
                    raise TrainingInterrupted(
                        f"{name} received: stopped at step {step} with a checkpoint; continue "
                        f"with: qscore train --resume {where}"
                    )
    except TrainingDiverged as error:
        statuses = [f"diverged: {error}"] * len(runs)
        last = latest_checkpoint(runs[0].run_dir)
        raise TrainingDiverged(
            f"{error}; training stopped. Last good checkpoint: {last or 'none'}"
        ) from None
    except TrainingInterrupted:
        raise
    except BaseException as error:
        statuses = [f"stopped at step {step}: {type(error).__name__}"] * len(runs)
        raise
    finally:
        bar.close()
        summaries = []
        for run, status in zip(runs, statuses, strict=True):
            run.board.close()
            summary = {
                "status": status,
                "algo": config.algo,
                "env_id": tc.env_id,
                "seed": run.state.seed,
                "final_eval": run.state.last_eval,
                "best_eval": run.state.best_eval,
                "steps": step,
                "episodes": run.state.episodes,
                "total_time_s": time.perf_counter() - clock_start,
            }
            atomic_write_json(run.run_dir / "summary.json", summary)
            summaries.append(summary)
    return summaries


@jax.jit
def _all_finite_seeds(agents: Any) -> jax.Array:
    """Per seed: whether every array of its agent is finite."""
    leaves = jax.tree_util.tree_leaves(agents)
    per_leaf = [jax.numpy.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]
    return jax.numpy.stack(per_leaf).all(axis=0)


def _stacked_batches(batches: list[Batch]) -> Batch:
    return Batch(*(np.stack(column) for column in zip(*batches, strict=True)))


def _episode_stats(returns: list[float]) -> dict[str, float]:
    if not returns:
        return {"episode_return_mean": math.nan, "episode_return_last": math.nan}
    return {"episode_return_mean": float(np.mean(returns)), "episode_return_last": returns[-1]}

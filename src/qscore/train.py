"""The training loop: warm-up, exploration, replay, updates, evaluation, logs and checkpoints."""

from __future__ import annotations

import importlib.metadata
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from qscore.agents.qsm import QSMAgent, create_qsm, update
from qscore.atomic import atomic_write_json
from qscore.checkpoint import FINAL, checkpoint_dir, periodic_name, save_checkpoint
from qscore.config import RunConfig
from qscore.envs import make_env, space_dims
from qscore.evaluate import run_episodes
from qscore.logs import CsvLog, TensorBoard
from qscore.replay import ReplayBuffer

EVAL_SEED_OFFSET = 1_000_003
"""The eval env's seeds start at seed + this, far from the training env's seed."""

PACKAGES = ("qscore", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco")


class RunDirError(ValueError):
    """The run directory cannot be used (it exists and holds a run)."""


class TrainingDiverged(RuntimeError):
    """A loss, Q value or parameter became non-finite."""


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
    return out.stdout.strip() or None if out.returncode == 0 else None


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
                f"run directory {run_dir} already exists and is not empty; "
                "pass --overwrite to replace it or choose another --out"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _finite_or_raise(values: dict[str, float], step: int) -> None:
    bad = sorted(name for name, value in values.items() if not math.isfinite(value))
    if bad:
        raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}")


def _episode_stats(returns: list[float]) -> dict[str, float]:
    if not returns:
        return {"episode_return_mean": math.nan, "episode_return_last": math.nan}
    return {"episode_return_mean": float(np.mean(returns)), "episode_return_last": returns[-1]}


def collect_transition(
    env: Any, obs: np.ndarray, action: np.ndarray, buffer: ReplayBuffer
) -> tuple[np.ndarray, float, bool]:
    """Step ``env``, store (s, a, r, s', terminated) and reset when the episode ends.

    Only ``terminated`` stops bootstrapping: a time-limit ``truncated`` end is stored as not
    terminated, with the true final observation as s'. Returns the observation to act on
    next, the reward and whether the episode ended.
    """
    next_obs, reward, terminated, truncated, _ = env.step(action)
    next_obs = np.asarray(next_obs, np.float32)
    buffer.add(obs, action, float(reward), next_obs, bool(terminated))
    if terminated or truncated:
        return np.asarray(env.reset()[0], np.float32), float(reward), True
    return next_obs, float(reward), False


def train(
    config: RunConfig, run_dir: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train QSM as ``config`` says, writing everything to ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    tc, ac = config.train, config.agent
    env = make_env(tc.env_id, seed=tc.seed)
    eval_env = make_env(tc.env_id, seed=tc.seed + EVAL_SEED_OFFSET)
    obs_dim, action_dim = space_dims(env)
    buffer = ReplayBuffer(obs_dim, action_dim, min(tc.buffer_size, tc.total_steps))
    prepare_run_dir(run_dir, overwrite)
    atomic_write_json(run_dir / "config.json", {**config.to_dict(), **run_metadata()})

    agent: QSMAgent = create_qsm(ac, obs_dim, action_dim, tc.seed)
    replay_rng = np.random.default_rng(tc.seed)
    act_key = jax.random.fold_in(jax.random.PRNGKey(tc.seed), 1)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(tc.seed), 2)
    train_log = CsvLog(run_dir / "train.csv")
    eval_log = CsvLog(run_dir / "eval.csv", ["step", "return_mean", "return_std", "episodes"])
    board = TensorBoard(run_dir / "tensorboard")

    start = time.perf_counter()
    window_start, window_steps = start, 0
    obs, _ = env.reset(seed=tc.seed)
    obs = np.asarray(obs, np.float32)
    episode_return, episodes, finished_returns = 0.0, 0, []
    metrics: dict[str, jax.Array] = {}
    best: dict[str, float] = {"return_mean": -math.inf, "step": 0}
    last_eval: dict[str, float] = {}
    status, step = "completed", 0

    def evaluate(step: int) -> None:
        nonlocal eval_key, last_eval
        eval_key, episodes_key = jax.random.split(eval_key)
        returns = run_episodes(
            agent, eval_env, tc.eval_episodes, tc.seed + EVAL_SEED_OFFSET, episodes_key
        )
        last_eval = {
            "step": step,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "episodes": len(returns),
            "wall_time": time.perf_counter() - start,
        }
        eval_log.append(last_eval)
        board.scalars("eval", {"return_mean": last_eval["return_mean"]}, step)
        if last_eval["return_mean"] > best["return_mean"]:
            best.update(return_mean=last_eval["return_mean"], step=step)
        bar.set_postfix(eval_return=f"{last_eval['return_mean']:.1f}")

    def checkpoint(path: Path, step: int) -> None:
        save_checkpoint(path, agent, {"step": step, "episodes": episodes})

    bar = tqdm(
        total=tc.total_steps, unit="step", disable=not progress, dynamic_ncols=True, mininterval=1.0
    )
    try:
        for step in range(1, tc.total_steps + 1):
            if step <= tc.warmup_steps:
                action = env.action_space.sample()
            else:
                action, act_key = agent.act(obs, act_key, explore=True)
            obs, reward, episode_ended = collect_transition(env, obs, action, buffer)
            episode_return += reward
            if episode_ended:
                finished_returns.append(episode_return)
                episodes += 1
                episode_return = 0.0

            if step > tc.warmup_steps:
                batches = buffer.sample(replay_rng, (ac.utd, ac.batch_size))
                agent, metrics = update(agent, batches)

            window_steps += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.total_steps:
                now = time.perf_counter()
                row: dict[str, Any] = {"step": step, "episodes": episodes}
                row.update(_episode_stats(finished_returns))
                scalars = {name: float(value) for name, value in metrics.items()}
                _finite_or_raise(scalars, step)
                row.update(scalars)
                row["steps_per_sec"] = window_steps / max(now - window_start, 1e-9)
                row["wall_time"] = now - start
                train_log.append(row)
                board.scalars("train", {k: v for k, v in row.items() if k != "step"}, step)
                window_start, window_steps, finished_returns = now, 0, []
            if (tc.eval_every and step % tc.eval_every == 0) or step == tc.total_steps:
                evaluate(step)
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                checkpoint(checkpoint_dir(run_dir) / periodic_name(step), step)
        checkpoint(checkpoint_dir(run_dir) / FINAL, tc.total_steps)
    except TrainingDiverged as error:
        status = f"diverged: {error}"
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
            "final_eval": last_eval or None,
            "best_eval": {"step": best["step"], "return_mean": best["return_mean"]}
            if last_eval
            else None,
            "steps": step,
            "episodes": episodes,
            "total_time_s": time.perf_counter() - start,
        }
        atomic_write_json(run_dir / "summary.json", summary)
    return summary

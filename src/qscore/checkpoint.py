"""Checkpoints: the whole run state in one directory per step, written atomically.

``RUN_DIR/checkpoints/step_000050000/`` holds

* ``agent.msgpack``: all parameters, optimiser states, target networks and keys;
* ``loop.json``: counters, keys, host RNG state and the episode in progress
  (:class:`qscore.training.LoopState`);
* ``replay.npz``: the replay buffer (kept in the newest checkpoint only, to save disk).

A checkpoint is written into a hidden temporary directory, every file fsynced, and then
renamed into place, so a process killed at any moment leaves the previous checkpoints
intact and never a partial one under a ``step_*`` name. The newest checkpoint is the one
with the highest step; ``qscore eval`` and ``--resume`` use it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
from flax import serialization

from qscore.agents import get_algorithm
from qscore.atomic import fsync_dir
from qscore.config import RunConfig
from qscore.rundir import read_config

Agent = TypeVar("Agent")

AGENT_FILE, LOOP_FILE, REPLAY_FILE = "agent.msgpack", "loop.json", "replay.npz"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_name(step: int) -> str:
    return f"step_{step:09d}"


def agent_bytes(agent: Any) -> bytes:
    return serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(agent)))


def agent_from_bytes(data: bytes, template: Agent) -> Agent:
    """Restore an agent's arrays into the structure (and static config) of ``template``.

    Agent fields that an older qscore did not write (such as QSM's ``temperature``)
    keep the template's initial value, which is what those versions used throughout.
    """
    state = serialization.msgpack_restore(data)
    initial = serialization.to_state_dict(jax.device_get(template))
    state = {**{key: value for key, value in initial.items() if key not in state}, **state}
    agent = serialization.from_state_dict(template, state)
    return jax.tree_util.tree_map(jax.numpy.asarray, agent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_run_checkpoint(
    run_dir: str | Path,
    step: int,
    agent: Any,
    replay: dict[str, np.ndarray] | None,
    loop: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` atomically (see :func:`prune_replay` for older ones)."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / step_name(step)
    for stale in folder.glob(".tmp_*"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder / f".tmp_{step_name(step)}_{os.getpid()}"
    tmp.mkdir()
    _write_synced(tmp / AGENT_FILE, agent_bytes(agent))
    _write_synced(tmp / LOOP_FILE, json.dumps(loop).encode())
    if replay is not None:  # the rows of qscore.replay.replay_state
        with open(tmp / REPLAY_FILE, "wb") as handle:
            np.savez(handle, **replay)
            handle.flush()
            os.fsync(handle.fileno())
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(folder)
    return final


def prune_replay(run_dir: str | Path) -> None:
    """Delete the replay copies of all but the newest checkpoint (call once every seed of a
    run has written its newest one, so that a common step to resume from always remains)."""
    for older in list_checkpoints(run_dir)[:-1]:
        (older / REPLAY_FILE).unlink(missing_ok=True)


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.removeprefix("step_"))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir() if p.name.startswith("step_") and (p / AGENT_FILE).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_agent(checkpoint: str | Path, template: Agent) -> tuple[Agent, int]:
    """The agent of a checkpoint directory, and its step."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / AGENT_FILE).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    agent = agent_from_bytes((checkpoint / AGENT_FILE).read_bytes(), template)
    loop = json.loads((checkpoint / LOOP_FILE).read_text())
    return agent, int(loop["step"])


def restore_agent(
    config: RunConfig, obs_dim: int, action_dim: int, checkpoint: str | Path
) -> tuple[Any, int]:
    """The agent that a run with ``config`` saved in ``checkpoint``, for a task of these
    sizes, and its step (a fresh agent of the run's algorithm is the template)."""
    template = get_algorithm(config.algo).create(
        config.agent, obs_dim, action_dim, config.train.seed
    )
    return load_agent(checkpoint, template)


def load_run_checkpoint(
    checkpoint: str | Path, template: Agent
) -> tuple[Agent, dict[str, Any], dict[str, np.ndarray] | None]:
    """Agent, loop state and (when kept) replay buffer state of a checkpoint directory."""
    checkpoint = Path(checkpoint)
    agent, _ = load_agent(checkpoint, template)
    loop = json.loads((checkpoint / LOOP_FILE).read_text())
    replay = None
    if (checkpoint / REPLAY_FILE).is_file():
        with np.load(checkpoint / REPLAY_FILE) as data:
            replay = {name: data[name] for name in data.files}
    return agent, loop, replay


def restore_newest_with_replay(
    run_dir: str | Path, fields: tuple[str, ...] = ("obs",)
) -> tuple[RunConfig, Any, int, dict[str, np.ndarray]]:
    """The resolved config, agent and step of a single-seed run's newest checkpoint, and the
    ``fields`` (``obs``, ``action``, ...) of the replay buffer saved with it (for probes of
    a trained run).

    Raises FileNotFoundError when the newest checkpoint kept no replay buffer."""
    from qscore.envs import make_env, space_dims

    run_dir = Path(run_dir)
    config = RunConfig.from_dict(read_config(run_dir))
    env = make_env(config.train.env_id)
    obs_dim, action_dim = space_dims(env)
    env.close()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or not (checkpoint / REPLAY_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint with a replay")
    agent, step = restore_agent(config, obs_dim, action_dim, checkpoint)
    with np.load(checkpoint / REPLAY_FILE) as replay:
        arrays = {name: replay[name] for name in fields}
    return config, agent, step, arrays

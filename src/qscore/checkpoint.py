"""Saving and loading the agent (all parameters, optimiser states, targets and keys).

A checkpoint is one msgpack file written atomically: ``{"agent": ..., "meta": {...}}``.
The static part of the agent (its config) lives in the run's config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import jax
from flax import serialization

from qscore.atomic import atomic_write_bytes

Agent = TypeVar("Agent")

FINAL = "final.msgpack"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def periodic_name(step: int) -> str:
    return f"step_{step:09d}.msgpack"


def save_checkpoint(path: str | Path, agent: Any, meta: dict[str, Any]) -> None:
    """Write the agent's arrays and ``meta`` (JSON-like: step, episodes...) atomically."""
    state = {"agent": serialization.to_state_dict(jax.device_get(agent)), "meta": meta}
    atomic_write_bytes(path, serialization.msgpack_serialize(state))


def load_checkpoint(path: str | Path, template: Agent) -> tuple[Agent, dict[str, Any]]:
    """Restore an agent saved by :func:`save_checkpoint` into the structure of ``template``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = serialization.msgpack_restore(path.read_bytes())
    agent = serialization.from_state_dict(template, state["agent"])
    return jax.tree_util.tree_map(jax.numpy.asarray, agent), state.get("meta", {})

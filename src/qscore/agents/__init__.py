"""The learning algorithms, by their ``--algo`` name.

Every agent is an immutable pytree with the same interface: ``create(config, obs_dim,
action_dim, seed)``, a jitted ``update(agent, batches)`` performing ``utd`` updates (batches
with a leading utd axis), and the methods ``policy(obs, key, explore)`` (pure, vmappable)
and ``act(obs, key, explore)`` (for host observations), and ``frozen()``, a policy object
with the same ``act`` for acting many times with fixed parameters (QSM precomputes its
denoiser's parameter-only terms there). An algorithm may add policy
diagnostics computed at logging time (QSM: the spread of its action samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qscore.agents import qsm, sac, td3


@dataclass(frozen=True)
class Algorithm:
    """How to create and update the agents of one algorithm."""

    name: str
    create: Callable[[Any, int, int, int], Any]
    update: Callable[[Any, Any], tuple[Any, dict[str, Any]]]
    diagnose: Callable[[Any, Any, Any], dict[str, Any]] | None = None
    """Optional policy diagnostics ``diagnose(agent, obs, key)`` logged with the losses."""


ALGORITHMS: dict[str, Algorithm] = {
    "qsm": Algorithm("qsm", qsm.create_qsm, qsm.update, qsm.diagnose),
    "sac": Algorithm("sac", sac.create_sac, sac.update),
    "td3": Algorithm("td3", td3.create_td3, td3.update),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]

"""How a trained QSM run's critics rank actions along the ray through the policy's action.

For each run directory (single seed, with a checkpoint that holds its replay), take
``--states`` recent replay states, draw one chain sample a per state (no exploration
noise) and evaluate min_j Q_phi_j(s, c * a / max|a|) for c in 0, 0.25, ..., 1: from the
zero action, through the sampled one, to the bound of the box. It prints and writes (with
``--json``) the mean of Q(c) - Q(s, a) per c, the share of states whose bound scores above
the sample, and the share whose zero action does. Values are in the critic's units (the
normalised rewards under ``normalize_rewards``).

Usage: python benchmarks/critic_probe.py RUN_DIR [RUN_DIR ...] [--states 250] [--json PATH]
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from qscore.agents.common import q_values
from qscore.agents.qsm import sample_policy
from qscore.checkpoint import restore_newest_with_replay

from _common import make_parser, write_json

RAY = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Points c of the ray c * a / max|a| (1: on the bound of the box)."""


def probe(run_dir: Path, num_states: int) -> dict:
    """The figures of one run (see the module docstring), from its newest checkpoint and
    ``num_states`` states spread over the newest 8 * ``num_states`` rows of its replay."""
    config, agent, step, replay = restore_newest_with_replay(run_dir)
    if config.algo != "qsm":
        raise ValueError(f"{run_dir} is a {config.algo} run; the probe needs a qsm run")
    replay_obs = replay["obs"]
    stride = max(1, len(replay_obs) // (8 * num_states))
    obs = jnp.asarray(replay_obs[::-stride][:num_states])
    actions = sample_policy(agent.chain(), obs, jax.random.PRNGKey(0))
    direction = actions / jnp.max(jnp.abs(actions), axis=1, keepdims=True)

    def min_q(a: jax.Array) -> jax.Array:
        return q_values(agent.config, agent.critic_params, obs, a).min(axis=0)

    q_sample = min_q(actions)
    q_ray = {c: min_q(c * direction) for c in RAY}
    return {
        "step": step,
        "states": int(obs.shape[0]),
        "sample_max_abs_action": float(jnp.max(jnp.abs(actions), axis=1).mean()),
        "q_ray_minus_sample": {str(c): float((q - q_sample).mean()) for c, q in q_ray.items()},
        "share_bound_above_sample": float((q_ray[1.0] > q_sample).mean()),
        "share_zero_above_sample": float((q_ray[0.0] > q_sample).mean()),
    }


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="QSM run directories (one seed each)")
    parser.add_argument("--states", type=int, default=250, help="replay states to probe")
    args = parser.parse_args()
    results = {}
    for run in args.runs:
        results[str(run)] = figures = probe(run, args.states)
        ray = ", ".join(f"{c}: {d:+.3f}" for c, d in figures["q_ray_minus_sample"].items())
        print(
            f"{run}: Q(c) - Q(sample) {{{ray}}}; bound above sample in"
            f" {figures['share_bound_above_sample']:.1%} of states, zero action in"
            f" {figures['share_zero_above_sample']:.1%}"
        )
    write_json(args.json, results)


if __name__ == "__main__":
    main()

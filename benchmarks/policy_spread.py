"""How wide a trained policy is, for QSM and SAC runs alike, and how uneven QSM's Q-scores are.

For each run directory (single seed, with a checkpoint that holds its replay), take
``--states`` states spread over its replay and draw ``--samples`` actions per state from
the policy without exploration noise (QSM: the reverse chain, one sample each, no best-of-N;
SAC: the tanh-Gaussian). It prints and writes (with ``--json``):

* ``action_spread``: the std of the samples for one state, averaged over states and action
  coordinates, as the training diagnostic of the same name (0.577 for uniform actions);
* ``action_at_bound``: the share of sampled coordinates within 1e-3 of +-1;
* QSM only, ``q_score_scale_quantiles``: at the replay actions of those states noised to a
  random step k, as in the actor loss, the quantiles (10, 25, 50, 75, 90, 99%) of each
  state's mean |g| over the batch mean |g| (g = grad_a Q). The ``normalized`` target
  divides by the batch mean, so a state at ratio r gets a step along g r times the
  typical one; ``normalized_per_state`` makes every ratio 1;
* QSM only, ``at_bound_by_q_score_scale``: the share of states in each bin of that ratio
  (below 0.5, 0.5-1, 1-2, 2 and above) and their share of samples at a bound.

Usage: python benchmarks/policy_spread.py RUN_DIR [RUN_DIR ...] [--states 512]
[--samples 8] [--json PATH]
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qscore.agents import qsm, sac
from qscore.checkpoint import restore_newest_with_replay
from qscore.diffusion import noise_actions

from _common import make_parser, write_json

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
RATIO_EDGES = (0.0, 0.5, 1.0, 2.0, float("inf"))


def policy_samples(algo: str, agent, obs: jax.Array, num_samples: int, key: jax.Array):
    """(B, num_samples, action_dim) actions of the policy without exploration noise."""
    if algo == "qsm":
        return qsm.chain_samples_per_state(agent, obs, key, num_samples)
    if algo != "sac":
        raise ValueError(f"policy_spread measures qsm and sac runs, not {algo}")
    repeated = jnp.repeat(obs, num_samples, axis=0)
    actions, _ = sac.sample_policy(
        agent.config, agent.action_dim, agent.actor_params, repeated, key
    )
    return actions.reshape(obs.shape[0], num_samples, agent.action_dim)


def q_score_scale_ratios(agent, obs: jax.Array, actions: jax.Array, key: jax.Array) -> jax.Array:
    """Per state, mean_i |g_i| over the batch's mean |g|, with g the Q-score at the replay
    actions noised to a uniformly drawn step k (the inputs of the actor loss)."""
    step_key, noise_key = jax.random.split(key)
    steps = jax.random.randint(step_key, (obs.shape[0],), 0, agent.config.num_diffusion_steps)
    noise = jax.random.normal(noise_key, actions.shape)
    noisy = noise_actions(agent.schedule, actions, steps, noise)
    magnitude = jnp.abs(qsm.q_score(agent.config, agent.critic_params, obs, noisy)).mean(axis=-1)
    return magnitude / magnitude.mean()


def at_bound_by_ratio(ratios: np.ndarray, at_bound: np.ndarray) -> dict[str, dict[str, float]]:
    """For each bin of the per-state ratio (below 0.5, 0.5-1, 1-2, 2 and above): the share
    of states in it and their mean share of sampled coordinates at a bound."""
    bins = {}
    for low, high in zip(RATIO_EDGES[:-1], RATIO_EDGES[1:], strict=True):
        chosen = (ratios >= low) & (ratios < high)
        bins[f"{low}-{high}"] = {
            "states": float(chosen.mean()),
            "at_bound": float(at_bound[chosen].mean()) if chosen.any() else float("nan"),
        }
    return bins


def measure(run_dir: Path, num_states: int, num_samples: int) -> dict:
    """The figures of one run (see the module docstring)."""
    config, agent, step, replay = restore_newest_with_replay(run_dir, fields=("obs", "action"))
    rows = np.linspace(0, len(replay["obs"]) - 1, num_states).astype(int)
    obs = jnp.asarray(replay["obs"][rows])
    sample_key, noise_key = jax.random.split(jax.random.PRNGKey(0))
    samples = policy_samples(config.algo, agent, obs, num_samples, sample_key)
    at_bound = np.asarray(jnp.abs(samples) > 1.0 - 1e-3)
    figures = {
        "algo": config.algo,
        "step": step,
        "states": int(obs.shape[0]),
        "action_spread": float(qsm.action_spread(samples)),
        "action_at_bound": float(at_bound.mean()),
    }
    if config.algo == "qsm":
        ratios = np.asarray(
            q_score_scale_ratios(agent, obs, jnp.asarray(replay["action"][rows]), noise_key)
        )
        figures["q_score_scale_quantiles"] = {
            str(q): float(v) for q, v in zip(QUANTILES, np.quantile(ratios, QUANTILES), strict=True)
        }
        figures["at_bound_by_q_score_scale"] = at_bound_by_ratio(ratios, at_bound.mean(axis=(1, 2)))
    return figures


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="qsm or sac run directories")
    parser.add_argument("--states", type=int, default=512, help="replay states to sample at")
    parser.add_argument("--samples", type=int, default=8, help="policy samples per state")
    args = parser.parse_args()
    results = {}
    for run in args.runs:
        results[str(run)] = figures = measure(run, args.states, args.samples)
        line = (
            f"{run} ({figures['algo']}, step {figures['step']}): spread"
            f" {figures['action_spread']:.3f}, at a bound {figures['action_at_bound']:.1%}"
        )
        if "q_score_scale_quantiles" in figures:
            quantiles = ", ".join(
                f"{float(q):.0%}: {v:.2f}" for q, v in figures["q_score_scale_quantiles"].items()
            )
            line += f"; per-state |g| / batch mean |g| quantiles {{{quantiles}}}"
            bins = ", ".join(
                f"{name}: {b['states']:.0%} of states, {b['at_bound']:.0%} at a bound"
                for name, b in figures["at_bound_by_q_score_scale"].items()
            )
            line += f"; by that ratio {{{bins}}}"
        print(line)
    write_json(args.json, results)


if __name__ == "__main__":
    main()

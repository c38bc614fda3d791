"""Where does the reverse chain put its actions when the denoiser is perfect?

Replaces eps_theta by the exact QSM target for a known concave critic,
Q(a) = -h |a - a*|^2 with its maximum a* inside the box, and runs the library's own
sampler (:func:`qscore.diffusion.sample_chain`, with clipping) for each target and schedule.
A sound design puts the samples near a* whatever h is (h plays the role of the reward
scale). Prints a table and writes JSON:

    python benchmarks/chain_analysis.py --json data/analysis/chain_analysis.json
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from qscore.agents.qsm import q_score_target, schedule_of
from qscore.config import QSMConfig
from qscore.diffusion import noise_actions, sample_chain, uniform_prior_eps

from _common import make_parser, write_json

BEST = jnp.asarray([0.3, -0.5])
"""a*: the maximiser of the analytic critic, inside [-1, 1]^2."""
TARGETS = {
    "scaled alpha=10": {"q_score_target": "scaled", "q_score_scale": 10.0},
    "scaled alpha=50": {"q_score_target": "scaled", "q_score_scale": 50.0},
    "normalized lambda=0.1": {"q_score_target": "normalized", "q_score_temperature": 0.1},
    "normalized lambda=0.15": {"q_score_target": "normalized", "q_score_temperature": 0.15},
    "normalized lambda=0.2": {"q_score_target": "normalized", "q_score_temperature": 0.2},
    "normalized lambda=0.3": {"q_score_target": "normalized", "q_score_temperature": 0.3},
    "normalized lambda=0.6": {"q_score_target": "normalized", "q_score_temperature": 0.6},
    "normalized lambda=1": {"q_score_target": "normalized", "q_score_temperature": 1.0},
}
PRIOR = {"action_prior": "uniform"}
TARGETS.update({f"{name} + prior": {**TARGETS[name], **PRIOR} for name in list(TARGETS)})
"""Every target also with the uniform action prior's noise prediction added."""
SCHEDULES = {
    "vp T=5": {"beta_schedule": "vp", "num_diffusion_steps": 5},
    "vp T=10": {"beta_schedule": "vp", "num_diffusion_steps": 10},
    "vp T=20": {"beta_schedule": "vp", "num_diffusion_steps": 20},
    "cosine T=5": {"beta_schedule": "cosine", "num_diffusion_steps": 5},
    "cosine T=10": {"beta_schedule": "cosine", "num_diffusion_steps": 10},
    "cosine T=20": {"beta_schedule": "cosine", "num_diffusion_steps": 20},
    "linear T=5": {"beta_schedule": "linear", "num_diffusion_steps": 5},
}


def q_score(actions: jax.Array, curvature: float) -> jax.Array:
    """g = grad_a Q(a) for Q(a) = -h |a - a*|^2."""
    return -2.0 * curvature * (actions - BEST)


def training_gradient_scale(config: QSMConfig, curvature: float, num: int, seed: int) -> jax.Array:
    """mean |g| over what training regresses on: replay actions (uniform on the box) noised
    to a random step k, as in the actor loss. The normalized targets divide by this."""
    schedule = schedule_of(config)
    action_key, step_key, noise_key = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    replay = jax.random.uniform(action_key, (num, 2), minval=-1.0, maxval=1.0)
    steps = jax.random.randint(step_key, (num,), 0, config.num_diffusion_steps)
    noisy = noise_actions(schedule, replay, steps, jax.random.normal(noise_key, (num, 2)))
    return jnp.abs(q_score(noisy, curvature)).mean()


def chain_samples(config: QSMConfig, curvature: float, num: int, seed: int) -> jax.Array:
    """Actions from the clipped reverse chain whose denoiser returns the exact target.

    For the normalized targets, mean |g| is that of the training distribution (a constant
    here, as it is per update batch in training), not that of the chain's own iterates.
    """
    schedule = schedule_of(config)
    scale = training_gradient_scale(config, curvature, num, seed)

    def perfect_denoiser(actions: jax.Array, steps: jax.Array) -> jax.Array:
        g = q_score(actions, curvature)
        alpha_bar = schedule.alpha_bars[steps[0, 0]]
        sigma = jnp.sqrt(1.0 - alpha_bar)
        if config.q_score_target == "normalized":  # the batch statistic of training
            eps = -sigma * g / (config.q_score_temperature * scale)
        else:
            eps = q_score_target(config, g, sigma, jnp.zeros_like(actions))
        if config.action_prior == "uniform":
            eps = eps + uniform_prior_eps(actions, alpha_bar)
        return eps

    return sample_chain(perfect_denoiser, schedule, jax.random.PRNGKey(seed), (num, 2))


def summarize(actions: jax.Array) -> dict[str, float]:
    return {
        "distance_to_best": float(jnp.linalg.norm(actions - BEST, axis=-1).mean()),
        "spread": float(actions.std(axis=0).mean()),
        "at_bound": float((jnp.abs(actions) > 1.0 - 1e-3).mean()),
    }


def main() -> None:
    parser = make_parser(__doc__, json_help="write the results here")
    parser.add_argument("--samples", type=int, default=4096)
    args = parser.parse_args()
    results = []
    print(f"{'target':32s}{'schedule':14s}{'h':>6s}{'|a - a*|':>10s}{'spread':>8s}{'bound':>8s}")
    for target_name, target in TARGETS.items():
        for schedule_name, schedule in SCHEDULES.items():
            for curvature in (1.0, 10.0):
                config = dataclasses.replace(QSMConfig(), **target, **schedule)
                row = summarize(chain_samples(config, curvature, args.samples, seed=0))
                jax.clear_caches()  # every row compiles anew; keep the process's code memory flat
                results.append(
                    {"target": target_name, "schedule": schedule_name, "h": curvature, **row}
                )
                print(
                    f"{target_name:32s}{schedule_name:14s}{curvature:6.0f}"
                    f"{row['distance_to_best']:10.3f}{row['spread']:8.3f}{row['at_bound']:8.2f}"
                )
    write_json(args.json, {"best": BEST.tolist(), "results": results})


if __name__ == "__main__":
    main()

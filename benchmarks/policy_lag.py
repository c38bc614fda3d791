"""Does a QSM policy lag its critic? The policy's Q-gap to the critic's best action, split
into *lag* (what more actor updates on the same critic close) and *bias* (what is left at
the actor's fixed point), with the alignment of -eps_theta with grad_a Q per noise level.

For each run directory (one seed, with checkpoints; the newest must hold the replay) and
each checkpoint at or after ``--from-step``:

* states: ``--states`` replay states collected before the checkpoint's step (the newest);
* a*: per state, the best by min_j Q of ``--candidates`` uniform actions and 32 chain
  samples, refined by projected gradient ascent on min_j Q inside the box;
* ``gap``: (min Q(s, a*) - min Q(s, a)) / (min Q(s, a*) - mean over uniform actions of
  min Q(s, .)), averaged over states: 0 is the critic's best action, 1 is no better than a
  uniform-random action. Given for one chain sample (``sample``), the chain run without
  its injected noise (``mode``) and the best of ``best_of_n_eval`` samples (``best_of_n``);
  ``distance`` is the mean |a - a*| per coordinate of one sample;
* ``after_updates``: the same gaps after K actor updates (K in ``--updates``) on replay
  batches with the critics frozen; ``step_progress`` is the share of the distance from the
  mode to a* that one actor update covers (the projection of the mode's move on a* - mode,
  over |a* - mode|^2): the policy improvement per update;
* ``alignment``: per noise level k, the cosine of -eps_theta(s, a_k, k) with g = grad_a Q
  at noised replay actions, and |eps_theta| / |eps*| (how much of its target it has fitted);
* ``at_bound`` and ``spread`` of chain samples.

Usage: python benchmarks/policy_lag.py RUN_DIR [RUN_DIR ...] [--json PATH] [--plot PNG]
       python benchmarks/policy_lag.py --from-json PATH --plot PNG
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qscore.agents.common import q_values
from qscore.agents.qsm import (
    QSMAgent,
    q_score,
    q_score_target,
    sample_policy,
    score_net,
    update_actor,
)
from qscore.checkpoint import list_checkpoints, load_agent, restore_newest_with_replay
from qscore.diffusion import noise_actions
from qscore.replay import Batch

from _common import make_parser, write_json


def min_q(agent: QSMAgent, obs: jax.Array, action: jax.Array) -> jax.Array:
    return q_values(agent.config, agent.critic_params, obs, action).min(axis=0)


@partial(jax.jit, static_argnames=("num_samples", "noiseless"))
def chain_samples(
    agent: QSMAgent, obs: jax.Array, key: jax.Array, num_samples: int, noiseless: bool = False
) -> jax.Array:
    """(B, num_samples, d) chain samples per state (``noiseless``: no noise injected)."""
    chain = agent.chain()
    if noiseless:
        chain = chain.replace(config=dataclasses.replace(chain.config, sampling_temperature=0.0))
    repeated = jnp.repeat(obs, num_samples, axis=0)
    actions = sample_policy(chain, repeated, key)
    return actions.reshape(obs.shape[0], num_samples, agent.action_dim)


@partial(jax.jit, static_argnames=("num_candidates", "ascent_steps"))
def best_actions(
    agent: QSMAgent, obs: jax.Array, key: jax.Array, num_candidates: int, ascent_steps: int
) -> tuple[jax.Array, jax.Array]:
    """a* per state (see the module docstring) and the mean min Q of uniform actions."""
    batch, dim = obs.shape[0], agent.action_dim
    uniform_key, chain_key = jax.random.split(key)
    uniform = jax.random.uniform(uniform_key, (batch, num_candidates, dim), minval=-1, maxval=1)
    candidates = jnp.concatenate([uniform, chain_samples(agent, obs, chain_key, 32)], axis=1)
    repeated = jnp.repeat(obs, candidates.shape[1], axis=0)
    q = min_q(agent, repeated, candidates.reshape(-1, dim)).reshape(batch, -1)
    best = jnp.take_along_axis(candidates, jnp.argmax(q, axis=1)[:, None, None], axis=1)[:, 0]
    grad = jax.grad(lambda a: min_q(agent, obs, a).sum())

    def ascend(action: jax.Array, _: None) -> tuple[jax.Array, None]:
        moved = jnp.clip(action + 0.01 * jnp.sign(grad(action)), -1.0, 1.0)
        better = min_q(agent, obs, moved) > min_q(agent, obs, action)
        return jnp.where(better[:, None], moved, action), None

    best, _ = jax.lax.scan(ascend, best, None, length=ascent_steps)
    return best, q[:, :num_candidates].mean(axis=1)


def gap(agent: QSMAgent, obs: jax.Array, action: jax.Array, best: jax.Array, base: jax.Array):
    """Mean normalised Q-gap of ``action`` (B, d) to ``best`` (see the module docstring)."""
    q_best = min_q(agent, obs, best)
    return float(((q_best - min_q(agent, obs, action)) / (q_best - base + 1e-8)).mean())


def policy_gaps(agent: QSMAgent, obs: jax.Array, best: jax.Array, base: jax.Array) -> dict:
    """Gaps of one sample, of the noiseless chain and of best-of-N, and their distances."""
    key = jax.random.PRNGKey(1)
    sample = chain_samples(agent, obs, key, 1)[:, 0]
    mode = chain_samples(agent, obs, key, 1, noiseless=True)[:, 0]
    n = agent.config.best_of_n_eval
    many = chain_samples(agent, obs, key, max(n, 2))
    repeated = jnp.repeat(obs, many.shape[1], axis=0)
    q = min_q(agent, repeated, many.reshape(-1, agent.action_dim)).reshape(obs.shape[0], -1)
    picked = jnp.take_along_axis(many, jnp.argmax(q[:, :n], axis=1)[:, None, None], axis=1)
    return {
        "sample": gap(agent, obs, sample, best, base),
        "mode": gap(agent, obs, mode, best, base),
        "best_of_n": gap(agent, obs, picked[:, 0], best, base),
        "distance": float(jnp.abs(sample - best).mean()),
        "mode_distance": float(jnp.abs(mode - best).mean()),
        "at_bound": float((jnp.abs(many) > 1.0 - 1e-3).mean()),
        "spread": float(many.std(axis=1).mean()),
    }


@jax.jit
def alignment_per_level(agent: QSMAgent, obs: jax.Array, action: jax.Array, key: jax.Array):
    """Per noise level k: mean cosine(-eps_theta, g) and mean |eps_theta| / |eps*|."""
    config, steps_total = agent.config, agent.config.num_diffusion_steps

    def at_level(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        noise = jax.random.normal(jax.random.fold_in(key, k), action.shape)
        steps = jnp.full((obs.shape[0], 1), k)
        noisy = noise_actions(agent.schedule, action, steps[:, 0], noise)
        g = q_score(config, agent.critic_params, obs, noisy)
        sigma = jnp.sqrt(1.0 - agent.schedule.alpha_bars[steps])
        target = q_score_target(config, g, sigma, noise, agent.temperature)
        eps = score_net(config, agent.action_dim).apply(
            {"params": agent.actor_params}, obs, noisy, steps
        )
        norm = jnp.linalg.norm
        cosine = -(eps * g).sum(-1) / (norm(eps, axis=-1) * norm(g, axis=-1) + 1e-8)
        ratio = norm(eps, axis=-1) / (norm(target, axis=-1) + 1e-8)
        return cosine.mean(), ratio.mean()

    return jax.vmap(at_level)(jnp.arange(steps_total))


def improvement(agent, obs, best, base, replay, updates: list[int], seed: int) -> dict:
    """Gaps after K actor updates with frozen critics, and the progress of one update."""
    rng = np.random.default_rng(seed)
    step = jax.jit(update_actor)
    key = jax.random.PRNGKey(seed)
    mode_key = jax.random.PRNGKey(1)
    before = chain_samples(agent, obs, mode_key, 1, noiseless=True)[:, 0]
    results, done, trained = {}, 0, agent
    for target_updates in sorted(updates):
        while done < target_updates:
            rows = rng.integers(0, len(replay["obs"]), agent.config.batch_size)
            batch = batch_of(replay, rows)
            key, update_key = jax.random.split(key)
            trained, _ = step(trained, batch, update_key)
            done += 1
            if done == 1:
                after = chain_samples(trained, obs, mode_key, 1, noiseless=True)[:, 0]
                to_best = best - before
                progress = (after - before) * to_best
                results["step_progress"] = float(
                    progress.sum(-1).mean() / ((to_best**2).sum(-1).mean() + 1e-12)
                )
        results[str(target_updates)] = policy_gaps(trained, obs, best, base)
    return results


def batch_of(replay: dict, rows: np.ndarray) -> Batch:
    obs = jnp.asarray(replay["obs"][rows])
    zeros = jnp.zeros(len(rows), jnp.float32)
    return Batch(obs, jnp.asarray(replay["action"][rows]), zeros, obs, zeros, zeros + 1)


def diagnose_checkpoint(agent: QSMAgent, step: int, replay: dict, args) -> dict:
    """Every figure of the module docstring for one checkpoint's agent."""
    seen = {name: values[:step] for name, values in replay.items()}
    obs = jnp.asarray(seen["obs"][-args.states :])
    action = jnp.asarray(seen["action"][-args.states :])
    best, base = best_actions(agent, obs, jax.random.PRNGKey(0), args.candidates, args.ascent_steps)
    cosine, ratio = alignment_per_level(agent, obs, action, jax.random.PRNGKey(2))
    return {
        "step": step,
        "policy": policy_gaps(agent, obs, best, base),
        "after_updates": improvement(agent, obs, best, base, seen, args.updates, step),
        "alignment_cosine": [float(c) for c in cosine],
        "fitted_ratio": [float(r) for r in ratio],
        "temperature": float(agent.temperature),
    }


def diagnose_run(run_dir: Path, args) -> list[dict]:
    config, newest, _, replay = restore_newest_with_replay(run_dir, ("obs", "action"))
    if config.algo != "qsm":
        raise SystemExit(f"policy_lag: error: {run_dir} is a {config.algo} run, not qsm")
    results = []
    for checkpoint in list_checkpoints(run_dir):
        agent, step = load_agent(checkpoint, newest)
        if step >= args.from_step:
            results.append(diagnose_checkpoint(agent, step, replay, args))
            print(summary_line(run_dir, results[-1]), flush=True)
    return results


def summary_line(run_dir: Path, figures: dict) -> str:
    policy, after = figures["policy"], figures["after_updates"]
    longest = max((k for k in after if k.isdigit()), key=int)
    return (
        f"{run_dir} step {figures['step']}: gap sample {policy['sample']:.2f} mode"
        f" {policy['mode']:.2f} best-of-N {policy['best_of_n']:.2f}; after {longest} actor"
        f" updates sample {after[longest]['sample']:.2f} mode {after[longest]['mode']:.2f};"
        f" one update covers {after['step_progress']:.4f} of the way;"
        f" at bound {policy['at_bound']:.2f} spread {policy['spread']:.2f}; cosine per level"
        f" {[round(c, 2) for c in figures['alignment_cosine']]}"
    )


def plot(results: dict[str, list[dict]], path: Path) -> Path:
    """Gaps over training (solid: now; dashed: after the most actor updates on the frozen
    critic), the spread of the policy, and the alignment per noise level at the last
    checkpoint, one colour per run (runs named ``.../VARIANT/seed_S`` share a colour)."""
    from qscore.plot import pyplot, save_png

    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    variants = sorted({Path(run).parent.name or run for run in results})
    colours = {v: f"C{i}" for i, v in enumerate(variants)}
    for run, checkpoints in results.items():
        colour, label = colours[Path(run).parent.name or run], Path(run).parent.name
        steps = [c["step"] for c in checkpoints]
        longest = max((k for k in checkpoints[0]["after_updates"] if k.isdigit()), key=int)
        axes[0].plot(
            steps, [c["policy"]["mode"] for c in checkpoints], "o-", color=colour, label=label
        )
        after = [c["after_updates"][longest]["mode"] for c in checkpoints]
        axes[0].plot(steps, after, "x--", color=colour)
        axes[1].plot(steps, [c["policy"]["spread"] for c in checkpoints], "o-", color=colour)
        cosine = checkpoints[-1]["alignment_cosine"]
        axes[2].plot(range(1, len(cosine) + 1), cosine, color=colour, marker="o")
    axes[0].set(xlabel="environment step", ylabel="normalised Q-gap of the chain's mode")
    axes[0].set_title(f"solid: policy; dashed: after {longest} actor updates, critic frozen")
    axes[1].set(xlabel="environment step", ylabel="spread of samples for one state")
    axes[2].set(xlabel="noise level k", ylabel="cosine(-eps_theta, grad_a Q)")
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes[0].legend(unique.values(), unique.keys(), fontsize=8)
    figure.tight_layout()
    return save_png(figure, path)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("runs", nargs="*", type=Path, help="QSM run directories (one seed each)")
    parser.add_argument("--states", type=int, default=512, help="replay states per checkpoint")
    parser.add_argument("--candidates", type=int, default=256, help="uniform candidates for a*")
    parser.add_argument("--ascent-steps", type=int, default=50, help="refinement steps of a*")
    parser.add_argument("--updates", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--from-step", type=int, default=0, help="skip earlier checkpoints")
    parser.add_argument("--plot", type=Path, help="draw them to this PNG")
    parser.add_argument("--from-json", type=Path, help="plot figures written before by --json")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = {str(run): diagnose_run(run, args) for run in args.runs}
    if not args.from_json:
        write_json(args.json, results)
    if args.plot:
        print(f"wrote {plot(results, args.plot)}")


if __name__ == "__main__":
    main()

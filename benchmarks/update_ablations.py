"""Where the QSM update's time goes beyond its FLOP bound: the update with parts removed.

Each variant is the ``paper`` update (Hopper-v4 and Humanoid-v4 shapes, as
``learner_speed.py``) with some of its non-matmul work taken out. They are not correct
learners; they bound how much of the gap between the update and its FLOP bound those parts
can explain:

* ``unchanged``: the update as it is;
* ``identity_activation``: the denoiser's mish replaced by the identity (no activation
  cost at all in the actor and the reverse chain);
* ``no_adam_no_polyak``: plain SGD steps instead of Adam (no moment updates) and no Polyak
  averaging of the target critics (memory-bound work over every parameter);
* ``bare``: both of the above;
* ``per_step_denoiser``: not a removal but the code before 2026-12-04, for comparison: the
  reverse chain calls the whole denoiser (time embedding, first layer on [a_k, s, e(k)])
  at every step, instead of :func:`qscore.networks.chain_denoiser`, which computes the
  terms of s and e(k) once per chain.

Every variant runs in its own process (jit caches and XLA flags cannot leak between them),
and the variants alternate over ``--rounds`` rounds so that all see the same drift of the
machine. Each process times the update and the chained-matmul throughput in alternation,
as ``learner_speed.py`` does. The script prints the median over rounds of the update time
and of update / FLOP bound per variant, and writes every figure with ``--json``.

Usage: python benchmarks/update_ablations.py [--rounds 3] [--repeats 40] [--json PATH]
       [--variants unchanged,per_step_denoiser]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import make_parser, write_json

VARIANTS = ("unchanged", "identity_activation", "no_adam_no_polyak", "bare", "per_step_denoiser")


def apply_variant(variant: str) -> None:
    """Patch the QSM update in this process to remove the parts ``variant`` names."""
    import optax

    from qscore import networks
    from qscore.agents import common, qsm

    if variant in ("identity_activation", "bare"):
        networks.ACTIVATIONS["mish"] = lambda x: x
    if variant in ("no_adam_no_polyak", "bare"):
        qsm.actor_optimizer = lambda config: optax.sgd(config.actor_lr)
        # create_qsm (qsm) builds the critics' optimiser state, critic_step (common) steps it.
        qsm.critic_optimizer = common.critic_optimizer = lambda config: optax.sgd(config.critic_lr)
        qsm.polyak = lambda online, target, tau: target
    if variant == "per_step_denoiser":

        def per_step(net, params, obs, num_steps, tables=None):
            return lambda noisy_action, step: net.apply({"params": params}, obs, noisy_action, step)

        qsm.chain_denoiser = per_step


def measure(variant: str, repeats: int) -> dict:
    """Update time, FLOPs and matmul throughput of ``variant`` for every task shape."""
    apply_variant(variant)
    sys.path.insert(0, str(Path(__file__).parent))
    import learner_speed

    figures = {}
    for task, (obs_dim, action_dim) in learner_speed.SHAPES.items():
        _, figures[task] = learner_speed.update_against_bound(obs_dim, action_dim, repeats)
    return figures


def run_child(variant: str, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = make_parser(__doc__, json_help="write every figure to this JSON file")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of variants")
    parser.add_argument("--repeats", type=int, default=40, help="timed updates per process")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + str(VARIANTS)
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeats)))
        return
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    rounds: list[dict[str, dict]] = []
    for round_index in range(args.rounds):
        figures = {variant: run_child(variant, args.repeats) for variant in variants}
        rounds.append(figures)
        for variant, by_task in figures.items():
            ratios = ", ".join(f"{t} {f['update_vs_bound']:.2f}" for t, f in by_task.items())
            print(f"round {round_index + 1} {variant:>20}: update / bound {ratios}", flush=True)

    tasks = list(rounds[0][variants[0]])
    summary = {
        variant: {
            task: {
                key: statistics.median(r[variant][task][key] for r in rounds)
                for key in ("update_ms", "update_vs_bound")
            }
            for task in tasks
        }
        for variant in variants
    }
    print(f"\nmedian over {args.rounds} rounds: update ms (update / FLOP bound)")
    for variant, by_task in summary.items():
        cells = "  ".join(
            f"{task} {f['update_ms']:.2f} ({f['update_vs_bound']:.2f})"
            for task, f in by_task.items()
        )
        print(f"{variant:>20}: {cells}")
    write_json(args.json, {"rounds": rounds, "median": summary})


if __name__ == "__main__":
    main()

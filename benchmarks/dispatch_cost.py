"""What one compiled call costs the host before any work: dispatch of the loop's state.

Builds one seed's device state (``engine.DeviceState``: agent, replay, keys) for a preset
on Hopper-v4's dimensions and times, median over ``--repeats`` calls, how long a jitted
call that adds 1 to every float array takes to *return* (JAX dispatches asynchronously;
the work itself is waited for outside the timed span). The pipelined loop makes two such
calls per step, the fused loop one (docs/benchmarks.md).

Usage: python benchmarks/dispatch_cost.py [--preset fast] [--json PATH]
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from qscore import engine
from qscore.agents import get_algorithm
from qscore.config import make_config

from _common import machine_header, make_parser, write_json

DIMS = (11, 3)


def _bump(state: engine.DeviceState) -> engine.DeviceState:
    return jax.tree_util.tree_map(lambda x: x + 1 if x.dtype == jnp.float32 else x, state)


def dispatch_us(preset: str, repeats: int, capacity: int = 10_000) -> dict:
    """Median time for the call to return, and the number of arrays in the state."""
    config = make_config(preset)
    agent = get_algorithm(config.algo).create(config.agent, *DIMS, 0)
    state = engine.create_state([agent], [0], DIMS, capacity)
    bump = jax.jit(_bump, donate_argnums=0)
    for _ in range(20):
        state = bump(state)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = bump(state)
        times.append(time.perf_counter() - start)
        jax.block_until_ready(state)
    return {
        "arrays": len(jax.tree_util.tree_leaves(state)),
        "dispatch_us": 1e6 * statistics.median(times),
    }


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    figures = {**machine_header("device"), "preset": args.preset}
    figures.update(dispatch_us(args.preset, args.repeats))
    print(f"{args.preset}: {figures['arrays']} arrays, {figures['dispatch_us']:.0f} us per call")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()

"""How many training runs of each preset fit on one accelerator.

For each algorithm:preset, builds one seed's device state (agent plus a replay buffer of
``--buffer`` rows for ``--env``'s dimensions), runs ``--steps`` compiled training steps and
reads the device's peak memory. ``runs_per_device`` is how many such processes fit in the
share of the device's memory that ``qscore sweep --workers K`` hands out
(:data:`qscore.sweep.GPU_MEMORY_SHARE`). Where the device reports no memory statistics
(the CPU), the figures are the arrays' sizes (replay plus agent) and ``runs_per_device`` is
left out.

Usage: python benchmarks/gpu_memory.py [--env Hopper-v4] [--buffer 1000000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
import numpy as np

from qscore import engine
from qscore.agents import get_algorithm
from qscore.config import make_config
from qscore.envs import make_env, space_dims
from qscore.replay import Transition
from qscore.sweep import GPU_MEMORY_SHARE

from _common import machine_header, make_parser, write_json

CELLS = (("qsm", "robust"), ("qsm", "paper"), ("qsm", "fast"), ("sac", "paper"), ("td3", "paper"))


def tree_bytes(tree) -> int:
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree))


def measure(algo: str, preset: str, dims: tuple[int, int], args) -> dict:
    """Array sizes and, where the device reports it, peak memory of one seed's training."""
    config = make_config(preset, {}, {"env_id": args.env}, algo)
    algorithm = get_algorithm(algo)
    state = engine.create_state([algorithm.create(config.agent, *dims, 0)], [0], dims, args.buffer)
    figures = {"replay_bytes": tree_bytes(state.replays), "agent_bytes": tree_bytes(state.agents)}
    obs = np.zeros((1, dims[0]), np.float32)
    rows = Transition(
        obs, np.zeros((1, dims[1]), np.float32), np.ones(1, np.float32), obs,
        np.zeros(1, np.float32), np.zeros(1, np.float32),
    )  # fmt: skip
    spec = engine.sample_spec(config.agent)
    for index in range(config.agent.batch_size + args.steps):
        state, actions, _ = engine.train_step(
            state, rows, obs, update_fn=algorithm.update, spec=spec,
            updates=index >= config.agent.batch_size, warmup_action=False, action_dim=dims[1],
        )  # fmt: skip
    np.asarray(actions)
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        figures["peak_bytes"] = int(stats["peak_bytes_in_use"])
        figures["device_bytes"] = int(stats.get("bytes_limit", 0))
    return figures


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--buffer", type=int, default=1_000_000, help="replay rows")
    parser.add_argument("--steps", type=int, default=20, help="training steps measured")
    parser.add_argument("--cells", default=",".join(f"{a}:{p}" for a, p in CELLS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one cell, in this process
    args = parser.parse_args()
    env = make_env(args.env)
    dims = space_dims(env)
    env.close()
    if args.one:
        print(json.dumps(measure(*args.one.split(":"), dims, args)))
        return
    results = {**machine_header("device"), "env_id": args.env, "buffer": args.buffer}
    for cell in filter(None, args.cells.split(",")):
        # a fresh process per cell: the device's peak memory counts since process start
        command = [sys.executable, __file__, "--one", cell, "--env", args.env,
                   "--buffer", str(args.buffer), "--steps", str(args.steps)]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        if "peak_bytes" in figures and figures.get("device_bytes"):
            share = GPU_MEMORY_SHARE * figures["device_bytes"]
            figures["runs_per_device"] = int(share // figures["peak_bytes"])
        results[cell] = figures
        print(cell, {k: _shown(k, v) for k, v in figures.items()}, flush=True)
    write_json(args.json, results)


def _shown(key: str, value: int) -> str | int:
    return f"{value / 2**30:.2f} GiB" if key.endswith("bytes") else value


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    main()

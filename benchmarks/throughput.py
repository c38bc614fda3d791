"""End-to-end training throughput and the loop's cost beyond the learner.

Part 1: QSM (``robust``, ``paper``, ``fast``), SAC and TD3 on ``--env``, one seed each:
``steps_per_s``, environment steps per second of a real run (learner plus environment plus
host work), and ``update_only_steps_per_s``, the rate of the same compiled per-step call
(insert, ``utd`` updates, next actions) called in a loop with a fixed transition, no
environment and no host work; ``overhead = 1 - steps_per_s / update_only_steps_per_s`` is
what the loop costs.
Part 2: N seeds (``--counts``, default 1, 2, 4, 8) of QSM ``fast`` in one process: total
environment steps per second.

A run's rate is read from its own ``train.csv`` (``steps_per_sec`` over windows of
``--log-every`` steps): the median of the windows after the warm-up, the first of them
(compilation) left out. The update-only rate is the median of ``--repeats`` timings of
``--log-every`` calls.

With a qscore from before the training engine (2026-12-07), the update-only rate times that
loop's per-step device work instead: the vmapped update on a fixed batch, then the vmapped
action.

Usage: python benchmarks/throughput.py [--env Hopper-v4] [--json PATH] [--counts 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from qscore.agents import get_algorithm
from qscore.config import make_config
from qscore.envs import make_env, space_dims
from qscore.logs import read_csv
from qscore.train import train_seeds

CELLS = (("qsm", "robust"), ("qsm", "paper"), ("qsm", "fast"), ("sac", "paper"), ("td3", "paper"))


def loop_steps_per_sec(run_dir: Path, warmup: int) -> float:
    """Median steps/s of the logged windows after the warm-up, skipping the first one."""
    rows = [r for r in read_csv(run_dir / "train.csv") if int(r["step"]) > warmup]
    rates = [float(r["steps_per_sec"]) for r in rows[1:]] or [float(rows[0]["steps_per_sec"])]
    return statistics.median(rates)


def run_config(algo: str, preset: str, args):
    values = {
        "env_id": args.env,
        "total_steps": args.warmup + args.steps,
        "warmup_steps": args.warmup,
        "eval_every": 0,
        "eval_episodes": 1,
        "checkpoint_every": 0,
        "log_every": args.log_every,
    }
    return make_config(preset, {}, values, algo)


def end_to_end(algo: str, preset: str, seeds: list[int], args, workdir: Path) -> float:
    """Total environment steps/s of ``len(seeds)`` agents trained in this process."""
    run_dir = workdir / f"{algo}_{preset}_{len(seeds)}_seeds_{time.time_ns()}"
    train_seeds(run_config(algo, preset, args), seeds, run_dir, progress=False)
    first = run_dir if len(seeds) == 1 else run_dir / f"seed_{seeds[0]}"
    return len(seeds) * loop_steps_per_sec(first, args.warmup)


def update_only(algo: str, preset: str, args) -> float:
    """Calls per second of the loop's per-step device work for one seed, without env."""
    config = run_config(algo, preset, args)
    env = make_env(args.env)
    dims = space_dims(env)
    env.close()
    obs = np.zeros((1, dims[0]), np.float32)
    try:
        step = engine_step(config, dims, obs)
    except ImportError:  # a qscore from before the engine
        step = legacy_step(config, dims, obs)
    for _ in range(3):  # compile and settle
        step()
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.log_every):
            step()
        timings.append(args.log_every / (time.perf_counter() - start))
    return statistics.median(timings)


def engine_step(config, dims: tuple[int, int], obs: np.ndarray):
    """One call of :func:`qscore.engine.train_step` on a replay filled with random rows."""
    from qscore import engine

    algorithm = get_algorithm(config.algo)
    agent = algorithm.create(config.agent, *dims, 0)
    state = engine.create_state([agent], [0], dims, 10_000)
    rng = np.random.default_rng(0)
    transition = engine.Transitions(
        obs,
        rng.uniform(-1, 1, (1, dims[1])).astype(np.float32),
        np.ones(1, np.float32),
        obs,
        np.zeros(1, np.float32),
        np.zeros(1, np.float32),
    )
    spec = engine.sample_spec(config.agent)
    holder = {"state": state}

    def call(updates: bool = True) -> None:
        holder["state"], actions, _ = engine.train_step(
            holder["state"],
            transition,
            obs,
            update_fn=algorithm.update,
            spec=spec,
            updates=updates,
            warmup_action=False,
            action_dim=dims[1],
        )
        np.asarray(actions)  # the loop needs the actions on the host every step

    for _ in range(config.agent.batch_size):
        call(updates=False)
    return call


def legacy_step(config, dims: tuple[int, int], obs: np.ndarray):
    """The per-step device work of the loop before the engine: update, then act."""
    from qscore.replay import Batch
    from qscore.train import _act_seeds, _stacked, _update_seeds

    algorithm = get_algorithm(config.algo)
    agents = _stacked([algorithm.create(config.agent, *dims, 0)])
    rng = np.random.default_rng(0)
    shape = (1, config.agent.utd, config.agent.batch_size)
    batch = Batch(
        rng.normal(size=(*shape, dims[0])).astype(np.float32),
        rng.uniform(-1, 1, (*shape, dims[1])).astype(np.float32),
        rng.normal(size=shape).astype(np.float32),
        rng.normal(size=(*shape, dims[0])).astype(np.float32),
        np.zeros(shape, np.float32),
        np.ones(shape, np.float32),
    )
    holder = {"agents": agents, "keys": jax.random.split(jax.random.PRNGKey(0), 1)}

    def call() -> None:
        holder["agents"], _ = _update_seeds(algorithm.update, holder["agents"], batch)
        actions, holder["keys"] = _act_seeds(holder["agents"], obs, holder["keys"], True)
        np.asarray(actions)

    return call


def set_threaded_envs(threaded: bool) -> None:
    """Seeds' envs stepped in threads or one after another (no-op before the engine)."""
    from qscore import train

    if hasattr(train, "THREADED_ENVS"):
        train.THREADED_ENVS = threaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--steps", type=int, default=600, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=300, help="random steps before updates")
    parser.add_argument("--log-every", type=int, default=100, help="steps per timing window")
    parser.add_argument("--repeats", type=int, default=5, help="update-only timing windows")
    parser.add_argument("--counts", default="1,2,4,8", help="seed counts of part 2 (QSM fast)")
    parser.add_argument("--cells", default=",".join(f"{a}:{p}" for a, p in CELLS))
    args = parser.parse_args()
    results: dict = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "env_id": args.env,
        "measured_steps": args.steps,
        "algorithms": {},
        "seeds": {"preset": "fast", "one_process": {}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for cell in filter(None, args.cells.split(",")):
            algo, preset = cell.split(":")
            rate = end_to_end(algo, preset, [0], args, Path(tmp))
            alone = update_only(algo, preset, args)
            results["algorithms"][cell] = figures = {
                "steps_per_s": rate,
                "update_only_steps_per_s": alone,
                "overhead": 1.0 - rate / alone,
            }
            print(
                f"{cell} on {args.env}: {rate:7.1f} env steps/s end to end, {alone:7.1f}"
                f" update only, loop overhead {figures['overhead']:.1%}",
                flush=True,
            )
        for count in filter(None, args.counts.split(",")):
            for threaded in (True, False) if int(count) > 1 else (True,):
                set_threaded_envs(threaded)
                total = end_to_end("qsm", "fast", list(range(int(count))), args, Path(tmp))
                kind = "one_process" if threaded else "one_process_sequential_envs"
                results["seeds"].setdefault(kind, {})[count] = total
                print(
                    f"QSM fast, {count} seeds in one process ({kind}): {total:7.1f} env steps/s",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

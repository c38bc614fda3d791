"""End-to-end training throughput and the loop's cost beyond the learner.

Part 1: QSM (``robust``, ``paper``, ``fast``), SAC and TD3 on ``--env``, one seed each:
``steps_per_s``, environment steps per second of a real run (learner plus environment plus
host work), and ``update_only_steps_per_s``, the rate of the same compiled per-step call
(insert, ``utd`` updates, next actions) called in a loop with a fixed transition, no
environment and no host work; ``overhead = 1 - steps_per_s / update_only_steps_per_s`` is
what the loop costs.
Each cell runs in both loop modes (``--modes``): ``fused`` (store, update and act in one
compiled call) and ``pipelined`` (``--pipeline``: act first, then the updates run while
the host steps the envs). The cells and modes are measured ``--rounds`` times in turn, and
the JSON holds every round plus the medians (the overhead's is the median of the rounds').
Part 2: N seeds (``--counts``, default 1, 2, 4, 8) of QSM ``fast`` in one process, per mode:
total environment steps per second.

A run's rate is read from its own ``train.csv`` (``steps_per_sec`` over windows of
``--log-every`` steps): the median of the windows after the warm-up, the first of them
(compilation) left out. The update-only rate is the median of ``--repeats`` timings of
``--log-every`` calls.

Usage: python benchmarks/throughput.py [--env Hopper-v4] [--json PATH] [--counts 1,2,4,8]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from qscore import engine
from qscore.agents import get_algorithm
from qscore.config import make_config
from qscore.envs import make_env, space_dims
from qscore.logs import read_csv
from qscore.replay import Transition
from qscore.training import train_seeds

from _common import machine_header, make_parser, write_json

CELLS = (("qsm", "robust"), ("qsm", "paper"), ("qsm", "fast"), ("sac", "paper"), ("td3", "paper"))


def loop_steps_per_sec(run_dir: Path, warmup: int) -> float:
    """Median steps/s of the logged windows after the warm-up, skipping the first one."""
    rows = [r for r in read_csv(run_dir / "train.csv") if int(r["step"]) > warmup]
    rates = [float(r["steps_per_sec"]) for r in rows[1:]] or [float(rows[0]["steps_per_sec"])]
    return statistics.median(rates)


def run_config(algo: str, preset: str, args, pipeline: bool = False):
    values = {
        "pipeline": pipeline,
        "env_id": args.env,
        "total_steps": args.warmup + args.steps,
        "warmup_steps": args.warmup,
        "eval_every": 0,
        "eval_episodes": 1,
        "checkpoint_every": 0,
        "log_every": args.log_every,
    }
    return make_config(preset, {}, values, algo)


def end_to_end(
    algo: str, preset: str, seeds: list[int], args, workdir: Path, pipeline: bool = False
) -> float:
    """Total environment steps/s of ``len(seeds)`` agents trained in this process."""
    run_dir = workdir / f"{algo}_{preset}_{len(seeds)}_seeds_{time.time_ns()}"
    train_seeds(run_config(algo, preset, args, pipeline), seeds, run_dir, progress=False)
    first = run_dir if len(seeds) == 1 else run_dir / f"seed_{seeds[0]}"
    return len(seeds) * loop_steps_per_sec(first, args.warmup)


def update_only(algo: str, preset: str, args, pipeline: bool) -> float:
    """Calls per second of the loop's per-step device work for one seed, without env."""
    config = run_config(algo, preset, args, pipeline)
    env = make_env(args.env)
    dims = space_dims(env)
    env.close()
    step = engine_step(config, dims, np.zeros((1, dims[0]), np.float32))
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
    """The device calls of one loop step (:func:`qscore.engine.train_step`, or with
    ``pipeline`` :func:`~qscore.engine.store_and_act` then
    :func:`~qscore.engine.learn_step`) on a replay filled with random rows."""
    algorithm = get_algorithm(config.algo)
    agent = algorithm.create(config.agent, *dims, 0)
    state = engine.create_state([agent], [0], dims, 10_000)
    rng = np.random.default_rng(0)
    transition = Transition(
        obs,
        rng.uniform(-1, 1, (1, dims[1])).astype(np.float32),
        np.ones(1, np.float32),
        obs,
        np.zeros(1, np.float32),
        np.zeros(1, np.float32),
    )
    spec = engine.sample_spec(config.agent)
    holder = {"state": state}

    def fused(updates: bool = True) -> None:
        holder["state"], actions, _ = engine.train_step(
            holder["state"], transition, obs, update_fn=algorithm.update, spec=spec,
            updates=updates, warmup_action=False, action_dim=dims[1],
        )  # fmt: skip
        np.asarray(actions)  # the loop needs the actions on the host every step

    def pipelined() -> None:
        holder["state"], actions = engine.store_and_act(
            holder["state"], transition, obs, warmup_action=False, action_dim=dims[1]
        )
        np.asarray(actions)
        holder["state"], _ = engine.learn_step(
            holder["state"], update_fn=algorithm.update, spec=spec
        )

    for _ in range(config.agent.batch_size):
        fused(updates=False)
    return pipelined if config.train.pipeline else fused


def measure_cells(args, workdir: Path) -> dict:
    """Every cell and mode, ``--rounds`` times in turn: each round runs each cell end to
    end, then its update-only timing, so slow phases of the machine hit all of them."""
    rounds: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for cell in filter(None, args.cells.split(",")):
            algo, preset = cell.split(":")
            for mode in filter(None, args.modes.split(",")):
                pipeline = mode == "pipelined"
                rate = end_to_end(algo, preset, [0], args, workdir, pipeline)
                alone = update_only(algo, preset, args, pipeline)
                name = f"{cell}+pipeline" if pipeline else cell
                figures = {"steps_per_s": rate, "update_only_steps_per_s": alone}
                figures["overhead"] = 1.0 - rate / alone
                rounds.setdefault(name, []).append(figures)
                print(
                    f"round {round_index + 1} {name} on {args.env}: {rate:7.1f} env steps/s"
                    f" end to end, {alone:7.1f} update only, overhead {figures['overhead']:.1%}",
                    flush=True,
                )
    return {name: summarize(values) for name, values in rounds.items()}


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds (the overhead's median is of the per-round overheads)."""
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {**medians, "rounds": rounds}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--steps", type=int, default=600, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=300, help="random steps before updates")
    parser.add_argument("--log-every", type=int, default=100, help="steps per timing window")
    parser.add_argument("--repeats", type=int, default=5, help="update-only timing windows")
    parser.add_argument("--counts", default="1,2,4,8", help="seed counts of part 2 (QSM fast)")
    parser.add_argument("--cells", default=",".join(f"{a}:{p}" for a, p in CELLS))
    parser.add_argument("--modes", default="fused,pipelined", help="loop modes of part 1")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of part 1")
    args = parser.parse_args()
    results: dict = {
        **machine_header(),
        "env_id": args.env,
        "measured_steps": args.steps,
        "rounds": args.rounds,
        "seeds": {"preset": "fast"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["algorithms"] = measure_cells(args, Path(tmp))
        for mode in filter(None, args.modes.split(",")):
            for count in filter(None, args.counts.split(",")):
                seeds = list(range(int(count)))
                total = end_to_end("qsm", "fast", seeds, args, Path(tmp), mode == "pipelined")
                results["seeds"].setdefault(mode, {})[count] = total
                print(f"QSM fast, {count} seeds in one process ({mode}): {total:7.1f} env steps/s")
    write_json(args.json, results)


if __name__ == "__main__":
    main()

"""End-to-end training throughput: environment steps per second, learner plus environment.

Part 1: QSM, SAC and TD3 (``--preset``, default ``paper``) on Hopper-v4, one seed each.
Part 2: N seeds (N = 1, 2, 4, 8) of QSM trained in one process, their updates vmapped into
one compiled call, against N separate processes running at the same time (``fast`` preset
by default, so that 8 seeds fit this CPU's budget).

Throughput is read from the runs' own ``train.csv`` (``steps_per_sec``, a window of
``--log-every`` steps): the median of the windows after the warm-up, the first of them
(compilation) excluded. For N seeds, total throughput is N x the loop's steps/s.

Usage: python benchmarks/throughput.py [--json PATH] [--steps 600] [--warmup 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from qscore.config import make_config
from qscore.logs import read_csv
from qscore.train import train_seeds


def loop_steps_per_sec(run_dir: Path, warmup: int) -> float:
    """Median steps/s of the logged windows after the warm-up, skipping the first one."""
    rows = [r for r in read_csv(run_dir / "train.csv") if int(r["step"]) > warmup]
    rates = [float(r["steps_per_sec"]) for r in rows[1:]] or [float(rows[0]["steps_per_sec"])]
    return statistics.median(rates)


def train_values(env_id: str, steps: int, warmup: int, log_every: int) -> dict:
    return {
        "env_id": env_id,
        "total_steps": warmup + steps,
        "warmup_steps": warmup,
        "eval_every": 0,
        "eval_episodes": 1,
        "checkpoint_every": 0,
        "log_every": log_every,
    }


def one_process(algo: str, preset: str, seeds: list[int], args, workdir: Path) -> float:
    """Total environment steps/s of ``len(seeds)`` agents trained in this process."""
    config = make_config(
        preset, {}, train_values(args.env, args.steps, args.warmup, args.log_every), algo
    )
    run_dir = workdir / f"one_process_{algo}_{preset}_{len(seeds)}_seeds_{time.time_ns()}"
    train_seeds(config, seeds, run_dir, progress=False)
    folders = [run_dir] if len(seeds) == 1 else [run_dir / f"seed_{s}" for s in seeds]
    return len(seeds) * loop_steps_per_sec(folders[0], args.warmup)


def separate_processes(algo: str, preset: str, count: int, args, workdir: Path) -> float:
    """Total environment steps/s of ``count`` single-seed processes running concurrently."""
    commands, dirs = [], []
    for seed in range(count):
        run_dir = workdir / f"{algo}_{preset}_proc{count}_{seed}"
        dirs.append(run_dir)
        values = train_values(args.env, args.steps, args.warmup, args.log_every)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in values.items()]
        commands.append(
            [sys.executable, "-m", "qscore.cli", "train", "--algo", algo, "--preset", preset,
             "--seed", str(seed), "--out", str(run_dir), "--no-progress", *flags]
        )  # fmt: skip
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"a benchmark process failed: {process.args}")
    return sum(loop_steps_per_sec(d, args.warmup) for d in dirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--steps", type=int, default=600, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=300, help="random steps before updates")
    parser.add_argument("--log-every", type=int, default=100, help="steps per timing window")
    parser.add_argument("--preset", default="paper", help="preset of part 1")
    parser.add_argument("--seeds-preset", default="fast", help="preset of part 2 (QSM)")
    parser.add_argument("--counts", default="1,2,4,8", help="seed counts of part 2")
    parser.add_argument("--skip-algos", action="store_true", help="run part 2 only")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    results: dict = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "env_id": args.env,
        "measured_steps": args.steps,
        "algorithms": {},
        "seeds": {"preset": args.seeds_preset, "one_process": {}, "separate_processes": {}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_algos:
            for algo in ("qsm", "sac", "td3"):
                start = time.perf_counter()
                rate = one_process(algo, args.preset, [0], args, workdir)
                results["algorithms"][algo] = {"preset": args.preset, "steps_per_sec": rate}
                print(f"{algo} ({args.preset}) on {args.env}: {rate:7.1f} env steps/s "
                      f"[{time.perf_counter() - start:.0f} s]")  # fmt: skip
        for count in counts:
            seeds = list(range(count))
            together = one_process("qsm", args.seeds_preset, seeds, args, workdir)
            apart = separate_processes("qsm", args.seeds_preset, count, args, workdir)
            results["seeds"]["one_process"][count] = together
            results["seeds"]["separate_processes"][count] = apart
            print(f"QSM ({args.seeds_preset}) {count} seeds: one process {together:7.1f} "
                  f"steps/s, {count} processes {apart:7.1f} steps/s, "
                  f"ratio {together / apart:.2f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

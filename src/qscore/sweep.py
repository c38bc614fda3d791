"""Sweeps: a grid of algorithms x environments x seeds x config variants, one run per cell.

A sweep spec is a TOML file::

    name = "results"
    algos = ["qsm", "sac", "td3"]
    envs = ["InvertedPendulum-v4", "Hopper-v4"]
    seeds = [0, 1, 2]
    preset = "fast"                  # optional; default: robust for qsm, paper for sac, td3

    [train]                          # TrainConfig fields for every cell
    total_steps = 30000

    [agent.qsm]                      # fields of one algorithm's config, for its cells
    q_score_scale = 50.0

    [[variants]]                     # optional extra axis; without it, one variant
    name = "alpha10"                 # (named "" when absent)
    algos = ["qsm"]                  # optional: the algorithms it applies to
    agent = { q_score_scale = 10.0 }

Every cell is a normal run directory, ``SWEEP_DIR/ENV/ALGO[-VARIANT]/seed_S``. Running a
sweep again skips finished cells and resumes unfinished ones from their last checkpoint.
A failed cell is reported with its error and does not stop the others.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tomllib
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qscore.atomic import atomic_write_json
from qscore.config import ALGORITHM_CONFIGS, DEFAULT_PRESETS, RunConfig, make_config
from qscore.errors import ConfigError, TrainingInterrupted
from qscore.rundir import SWEEP_FILE, cell_dir, read_summary

"""Written in the sweep directory: the spec and the cells (read by plot and table)."""


@dataclass(frozen=True)
class Cell:
    """One run of a sweep."""

    algo: str
    env_id: str
    seed: int
    variant: str
    run_dir: str
    preset: str
    agent: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How plots and tables name this cell's line: the algorithm, and its variant."""
        return f"{self.algo}-{self.variant}" if self.variant else self.algo

    def config(self) -> RunConfig:
        values = {**self.train, "env_id": self.env_id, "seed": self.seed}
        return make_config(self.preset, self.agent, values, self.algo)


def _strings(spec: dict[str, Any], key: str) -> list[Any]:
    values = spec.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep spec needs a non-empty list {key!r}")
    return values


def load_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep spec at {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error


def expand(spec: dict[str, Any], sweep_dir: str | Path) -> list[Cell]:
    """The cells of a spec, each validated (a bad value fails here, before any run)."""
    known = {"name", "algos", "envs", "seeds", "preset", "train", "agent", "variants"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"unknown sweep spec key(s): {', '.join(unknown)}")
    algos, envs, seeds = _strings(spec, "algos"), _strings(spec, "envs"), _strings(spec, "seeds")
    for algo in algos:
        if algo not in ALGORITHM_CONFIGS:
            raise ConfigError(f"unknown algorithm {algo!r} in sweep spec")
    variants = spec.get("variants") or [{"name": ""}]
    names = [v.get("name", "") for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep variants need distinct names, got {names}")
    sweep_dir = Path(sweep_dir)
    cells = []
    for env_id in envs:
        for algo in algos:
            for variant in variants:
                if algo not in variant.get("algos", algos):
                    continue
                agent = {**spec.get("agent", {}).get(algo, {}), **variant.get("agent", {})}
                train = {**spec.get("train", {}), **variant.get("train", {})}
                name = variant.get("name", "")
                for seed in seeds:
                    cell = Cell(
                        algo, env_id, int(seed), name, "",
                        spec.get("preset", DEFAULT_PRESETS[algo]),
                        agent, train,
                    )  # fmt: skip
                    folder = cell_dir(sweep_dir, env_id, cell.label, seed)
                    cell = replace(cell, run_dir=str(folder))
                    cell.config()  # validate now
                    cells.append(cell)
    return cells


def cell_status(cell: Cell) -> str:
    """``done``, ``resume`` (has a checkpoint) or ``new``."""
    from qscore.checkpoint import latest_checkpoint

    run_dir = Path(cell.run_dir)
    data = read_summary(run_dir)
    if data is not None:
        if (
            data.get("status") == "completed"
            and data.get("steps") == cell.config().train.total_steps
        ):
            return "done"
    return "resume" if latest_checkpoint(run_dir) is not None else "new"


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run (or resume, or skip) one cell. Errors are returned, so that one failed cell
    does not stop the others; only SIGINT or SIGTERM (which stop the sweep) raise."""
    from qscore.training import resume, train

    try:
        status = cell_status(cell)
        if status == "done":
            return {"run_dir": cell.run_dir, "status": "skipped (finished)"}
        if status == "resume":
            resume(cell.config(), cell.run_dir, progress=False)
            return {"run_dir": cell.run_dir, "status": "resumed and finished"}
        train(cell.config(), cell.run_dir, overwrite=True, progress=False)
        return {"run_dir": cell.run_dir, "status": "finished"}
    except (TrainingInterrupted, KeyboardInterrupt):
        raise  # a signal stops the whole sweep (its cell has a checkpoint); a rerun resumes
    except BaseException as error:  # noqa: BLE001 - one failed cell must not stop the others
        return {
            "run_dir": cell.run_dir,
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }


GPU_MEMORY_SHARE = 0.9
"""Share of a GPU's memory that the workers of one local sweep take together."""


def worker_environment(workers: int, environ: dict[str, str]) -> dict[str, str]:
    """Environment variables for ``workers`` processes sharing one GPU: each preallocates
    ``GPU_MEMORY_SHARE / workers`` of its memory (JAX's default, 75% each, would let only
    one start). A fraction the user set in ``environ`` is kept."""
    if workers <= 1 or "XLA_PYTHON_CLIENT_MEM_FRACTION" in environ:
        return {}
    return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{GPU_MEMORY_SHARE / workers:.3f}"}


def run_local(cells: list[Cell], workers: int) -> Iterable[dict[str, Any]]:
    """Cells on a pool of ``workers`` fresh (spawned) processes, which share a GPU where
    there is one (:func:`worker_environment`); results as they finish."""
    if workers <= 1:
        yield from map(run_cell, cells)
        return
    os.environ.update(worker_environment(workers, dict(os.environ)))  # spawned children inherit
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for future in as_completed([pool.submit(run_cell, cell) for cell in cells]):
            yield future.result()


def run_ray(cells: list[Cell], address: str | None, workers: int) -> Iterable[dict[str, Any]]:
    """Cells as Ray tasks on the cluster at ``address`` (or a local Ray started here)."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError('the ray backend needs Ray: pip install "qscore[ray]"') from error
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_cell)
        pending = {remote.remote(cell): cell for cell in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    spec_path: str | Path,
    sweep_dir: str | Path,
    *,
    backend: str = "local",
    workers: int = 2,
    address: str | None = None,
    report: Callable[[dict[str, Any]], None] = print,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of a spec; returns one result per cell."""
    spec = load_spec(spec_path)
    cells = expand(spec, sweep_dir)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        Path(sweep_dir) / SWEEP_FILE, {"spec": spec, "cells": [asdict(c) for c in cells]}
    )
    if backend == "local":
        results_iter = run_local(cells, workers)
    elif backend == "ray":
        results_iter = run_ray(cells, address, workers)
    else:
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    results = []
    for result in results_iter:
        report(result)
        results.append(result)
    return results


def sweep_cells(sweep_dir: str | Path) -> list[Cell]:
    """The cells recorded in a sweep directory."""
    data = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    return [Cell(**cell) for cell in data["cells"]]

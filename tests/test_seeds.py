"""Several seeds in one process: vmapped updates, one env and one run directory per seed.

The vmapped computation batches the seeds' matrix products, whose floating-point
reductions XLA may order differently from a single seed's: results agree with the seeds
run one by one to float rounding (checked to a relative 1e-4), not bit for bit.
"""

import json

import jax
import numpy as np
import pytest
from flax import serialization

from qscore.checkpoint import AGENT_FILE, latest_checkpoint
from qscore.config import make_config
from qscore.logs import read_csv
from qscore.training import resume, train, train_seeds

from .conftest import TINY


def _config(algo: str, total_steps: int = 300):
    train_values = {
        "env_id": "Pendulum-v1",
        "total_steps": total_steps,
        "warmup_steps": 100,
        "eval_every": 150,
        "eval_episodes": 1,
        "checkpoint_every": 150,
        "log_every": 50,
    }
    agent = TINY if algo == "qsm" else {"actor_hidden": (32, 32), "critic_hidden": (32, 32),
                                        "batch_size": 16}  # fmt: skip
    return make_config("fast", agent, train_values, algo)


def _learning(run) -> np.ndarray:
    """train.csv's learning columns (all but timing) as numbers; empty cells are NaN."""
    rows = read_csv(run / "train.csv")
    skip = ("steps_per_sec", "wall_time")
    return np.array([[float(v or "nan") for k, v in r.items() if k not in skip] for r in rows])


def _agent_leaves(run) -> list[np.ndarray]:
    state = serialization.msgpack_restore((latest_checkpoint(run) / AGENT_FILE).read_bytes())
    return [np.asarray(leaf, np.float64) for leaf in jax.tree_util.tree_leaves(state)]


def _assert_same_run(a, b) -> None:
    np.testing.assert_allclose(_learning(a), _learning(b), rtol=1e-4, atol=1e-6)
    evals = [[float(r["return_mean"]) for r in read_csv(x / "eval.csv")] for x in (a, b)]
    np.testing.assert_allclose(evals[0], evals[1], rtol=1e-4)
    for x, y in zip(_agent_leaves(a), _agent_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("algo", ["qsm", "sac", "td3"])
def test_multi_seed_run_equals_the_seeds_run_one_by_one(tmp_path, algo):
    config = _config(algo)
    train_seeds(config, [3, 4], tmp_path / "together", progress=False)
    assert json.loads((tmp_path / "together" / "seeds.json").read_text())["seeds"] == [3, 4]
    for seed in (3, 4):
        alone = tmp_path / f"alone_{seed}"
        train(make_config("fast", _agent_of(config), {**_train_of(config), "seed": seed}, algo),
              alone, progress=False)  # fmt: skip
        together = tmp_path / "together" / f"seed_{seed}"
        saved = json.loads((together / "config.json").read_text())
        assert saved["train"]["seed"] == seed and saved["algo"] == algo
        assert sorted(p.name for p in together.iterdir()) == sorted(p.name for p in alone.iterdir())
        _assert_same_run(together, alone)
    seed_3, seed_4 = (_learning(tmp_path / "together" / f"seed_{s}") for s in (3, 4))
    assert not np.allclose(seed_3[:, 2:], seed_4[:, 2:], equal_nan=True)


def _agent_of(config):
    from dataclasses import asdict

    return asdict(config.agent)


def _train_of(config):
    from dataclasses import asdict

    return asdict(config.train)


def test_multi_seed_resume_continues_every_seed(tmp_path):
    run = tmp_path / "run"
    train_seeds(_config("qsm", 150), [0, 1], run, progress=False)
    summaries = resume(_config("qsm", 300), run, progress=False)
    assert [s["seed"] for s in summaries] == [0, 1]
    assert all(s["status"] == "completed" and s["steps"] == 300 for s in summaries)
    whole = tmp_path / "whole"
    train_seeds(_config("qsm", 300), [0, 1], whole, progress=False)
    for seed in (0, 1):  # same computation, same batch of seeds: bit for bit
        resumed = (latest_checkpoint(run / f"seed_{seed}") / AGENT_FILE).read_bytes()
        reference = (latest_checkpoint(whole / f"seed_{seed}") / AGENT_FILE).read_bytes()
        assert resumed == reference

"""Helpers shared by the agent tests: random batches, pytree comparison, fixed critics."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qscore.replay import Batch

OBS_DIM, ACTION_DIM = 4, 2


def random_batch(n: int, seed: int = 0, terminated: float = 0.0) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        reward=rng.normal(size=(n,)).astype(np.float32),
        next_obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        terminated=np.full((n,), terminated, np.float32),
        horizon=np.ones((n,), np.float32),
    )


def random_batches(utd: int, n: int, seed: int = 0) -> Batch:
    """``utd`` different random batches stacked on a leading axis."""
    parts = [random_batch(n, seed=seed * 1000 + i) for i in range(utd)]
    return Batch(*(np.stack(x) for x in zip(*parts, strict=True)))


def leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def constant_critics(params, constants):
    """Critic-ensemble params whose j-th network outputs constants[j] for every input."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    ensemble = zeros["VmapCritic_0"]["MLP_0"]
    last = sorted(ensemble)[-1]
    ensemble[last]["bias"] = jnp.asarray(constants, jnp.float32)[:, None]
    return zeros


def check_seeds_vmap(create, update_fn, config) -> None:
    """update and policy vmapped over a leading seed axis (as a multi-seed run does) give
    each seed's own results, to float rounding."""
    agents = [create(config, OBS_DIM, ACTION_DIM, seed=s) for s in (0, 1)]
    batches = [random_batches(3, 16, seed=s) for s in (0, 1)]

    def stack(*trees):
        return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)

    stacked, _ = jax.jit(jax.vmap(update_fn))(stack(*agents), stack(*batches))
    obs = np.stack([np.full(OBS_DIM, s, np.float32) for s in (0, 1)])
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    for explore in (False, True):
        actions, _ = jax.vmap(lambda a, o, k, e=explore: a.policy(o, k, e))(stacked, obs, keys)
        for i in (0, 1):
            alone, _ = update_fn(agents[i], batches[i])
            member = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], stacked)
            for a, b in zip(
                jax.tree_util.tree_leaves(member), jax.tree_util.tree_leaves(alone), strict=True
            ):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            action, _ = alone.act(obs[i], keys[i], explore)
            np.testing.assert_allclose(actions[i], action, rtol=1e-5, atol=1e-6)


def write_saved_config(run_dir, config) -> None:
    """config.json as a run with ``config`` writes it (this environment's package versions),
    without training: for tests of what is read from it."""
    import json
    from pathlib import Path

    from qscore.rundir import CONFIG_FILE, package_versions

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    saved = {**config.to_dict(), "versions": package_versions()}
    (Path(run_dir) / CONFIG_FILE).write_text(json.dumps(saved))


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    """The benchmark script ``benchmarks/NAME.py`` as a module (its functions, its settings)."""
    if str(BENCHMARKS) not in sys.path:  # as when run: the scripts import _common from there
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

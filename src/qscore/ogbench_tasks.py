"""OGBench's tasks (Park et al., 2025) through its optional ``ogbench`` package.

Importing ``ogbench`` registers its environments with Gymnasium; qscore does it only when
an id it does not know is asked for, so that the package stays optional
(``pip install "qscore[offline]"``). The single-task ids (``cube-single-singletask-task1-v0``
and so on) are the ones offline training uses: their rewards are relabelled from a dataset's
simulator states (:func:`qscore.datasets.relabelled`), and their ``success`` flag is
reported in eval.csv.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import qscore.envvars  # noqa: F401  (sets MUJOCO_GL before MuJoCo is first imported)
from qscore.atomic import atomic_write_bytes
from qscore.datasets import DatasetError, check_output, npz_bytes
from qscore.errors import ConfigError


def register_ogbench_tasks(env_id: str) -> None:
    """Import ``ogbench`` (which registers its tasks) when ``env_id`` is not registered yet
    and the package is installed; otherwise do nothing."""
    if env_id in gym.registry or importlib.util.find_spec("ogbench") is None:
        return
    import ogbench  # noqa: F401  (registers the tasks; MUJOCO_GL is set: qscore.envvars)

    # OGBench's manipulation tasks build a new float32 Box from float64 bounds at every
    # access of action_space, and Gymnasium warns about the cast each time: nothing is
    # lost, so that one warning is silenced once OGBench is in use.
    warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")


def is_ogbench_id(env_id: str) -> bool:
    """Whether ``env_id`` is registered by the ogbench package."""
    spec = gym.registry.get(env_id)
    return spec is not None and str(spec.entry_point).startswith("ogbench.")


def ogbench_task_ids() -> list[str]:
    """OGBench's state-based single-task ids (``cube-single-singletask-task1-v0``, ...),
    the ones qscore trains on (registering them first); none without the package. Its
    goal-conditioned, visual and powderworld ids are left out."""
    if importlib.util.find_spec("ogbench") is None:
        return []
    register_ogbench_tasks("cube-single-singletask-task1-v0")
    return sorted(
        env_id
        for env_id in gym.registry
        if is_ogbench_id(env_id)
        and "singletask" in env_id
        and not env_id.startswith("visual-")
        and "powderworld" not in env_id
    )


DOMAINS = ("cube-single", "cube-double", "scene", "puzzle-3x3")
"""The manipulation domains whose datasets :func:`collect_manipulation` makes."""
KINDS = ("play", "noisy")
"""OGBench's dataset kinds: ``play`` follows precomputed plans with temporally smoothed
noise (non-Markovian, like human play); ``noisy`` runs closed-loop (Markovian) oracles
with Gaussian action noise of a random scale per episode and some random actions."""
NOISY_RANDOM_ACTIONS = {"cube-single": 0.1, "cube-double": 0.1, "scene": 0.1, "puzzle-3x3": 0.2}
"""Probability of a uniform-random action per step in OGBench's ``noisy`` datasets."""
CUBE_STACKING = {"cube-single": (0.0, 0.0), "cube-double": (0.0, 0.25)}
"""Range of the per-episode probability that a new cube target is on top of another cube
(other domains: 0.5, the package's default)."""


@dataclass(frozen=True)
class DatasetName:
    """An OGBench dataset name, e.g. ``cube-single-play-v0``: domain, kind and version."""

    domain: str
    kind: str
    version: str

    @property
    def env_id(self) -> str:
        """The goal-conditioned environment the data is collected in."""
        return f"{self.domain}-{self.version}"

    def __str__(self) -> str:
        return f"{self.domain}-{self.kind}-{self.version}"


def parse_dataset_name(name: str) -> DatasetName:
    """Split ``name`` into domain, kind and version; refuse names this module cannot make."""
    for domain in DOMAINS:
        for kind in KINDS:
            prefix = f"{domain}-{kind}-"
            if name.startswith(prefix) and name[len(prefix) :].startswith("v"):
                return DatasetName(domain, kind, name[len(prefix) :])
    choices = ", ".join(f"{d}-{k}-v0" for d in DOMAINS for k in KINDS)
    raise DatasetError(f"cannot make OGBench dataset {name!r}; choose one of {choices}")


PLAN_NOISE = 0.1
"""Scale of the smoothed noise added to the plans of the ``play`` oracles (OGBench's)."""
PLAN_NOISE_SMOOTHING = 0.5
"""Width (in plan steps) of the Gaussian filter that smooths that noise (OGBench's)."""
MARKOV_MIN_NORM = 0.4
"""Smallest norm of the closed-loop oracles' position commands (OGBench's)."""
MAX_ACTION_NOISE = 0.1
"""``noisy`` datasets: each episode's action noise scale xi is drawn from U(0, this)."""
ACTION_NOISE_SHAPE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])
"""Per-coordinate multiple of xi (x, y, z, yaw, gripper), as OGBench's noisy data."""
EPISODE_STEPS = 1001
"""Steps of each collected episode (OGBench: 1001; the oracles chain tasks within it)."""


def _oracles(env: gym.Env, name: DatasetName) -> dict[str, Any]:
    """The package's scripted oracle for each task type of the domain (its ``play``
    (plan) or ``noisy`` (closed-loop) kind), keyed as ``info['privileged/target_task']``."""
    from ogbench.manipspace.oracles.markov import (
        button_markov,
        cube_markov,
        drawer_markov,
        window_markov,
    )
    from ogbench.manipspace.oracles.plan import button_plan, cube_plan, drawer_plan, window_plan

    if name.kind == "play":
        options: dict[str, Any] = {"noise": PLAN_NOISE, "noise_smoothing": PLAN_NOISE_SMOOTHING}
        cube, button = cube_plan.CubePlanOracle, button_plan.ButtonPlanOracle
        drawer, window = drawer_plan.DrawerPlanOracle, window_plan.WindowPlanOracle
    else:
        options = {"min_norm": MARKOV_MIN_NORM}
        cube, button = cube_markov.CubeMarkovOracle, button_markov.ButtonMarkovOracle
        drawer, window = drawer_markov.DrawerMarkovOracle, window_markov.WindowMarkovOracle
    if name.domain.startswith("cube"):
        return {"cube": cube(env=env, **options)}
    if name.domain == "puzzle-3x3":
        return {"button": button(env=env, gripper_always_closed=True, **options)}
    cube_options = options if name.kind == "play" else {**options, "max_step": 100}
    return {
        "cube": cube(env=env, **cube_options),
        "button": button(env=env, **options),
        "drawer": drawer(env=env, **options),
        "window": window(env=env, **options),
    }


@dataclass
class _EpisodeSettings:
    p_stack: float
    """Probability that a new cube target is on top of another cube."""
    noise_scale: float
    """xi: the std of the action noise (``noisy`` only; 0 for ``play``)."""
    p_random: float
    """Probability of a uniform-random action at a step."""


def _settings(name: DatasetName, rng: np.random.Generator) -> _EpisodeSettings:
    low, high = CUBE_STACKING.get(name.domain, (0.5, 0.5))
    noisy = name.kind == "noisy"
    return _EpisodeSettings(
        p_stack=float(rng.uniform(low, high)),
        noise_scale=float(rng.uniform(0.0, MAX_ACTION_NOISE)) if noisy else 0.0,
        p_random=NOISY_RANDOM_ACTIONS[name.domain] if noisy else 0.0,
    )


def oracle_episode(
    env: gym.Env, oracles: dict[str, Any], settings: _EpisodeSettings, rng: np.random.Generator,
    reset_seed: int,
) -> dict[str, list]:  # fmt: skip
    """One episode of the oracles in a data-collection env, as OGBench's dataset rows: each
    row the observation, the action taken there, whether the episode ends, and the
    simulator state (qpos, qvel, button states) at that observation. A new task is set
    whenever the current one's oracle is done."""
    ob, info = env.reset(seed=reset_seed)
    oracle = oracles[info["privileged/target_task"]]
    oracle.reset(ob, info)
    rows: dict[str, list] = defaultdict(list)
    done = False
    while not done:
        if rng.random() < settings.p_random:
            action = rng.uniform(-1.0, 1.0, env.action_space.shape)
        else:
            action = np.asarray(oracle.select_action(ob, info), np.float64)
            action = action + settings.noise_scale * ACTION_NOISE_SHAPE * rng.standard_normal(
                action.shape
            )
        action = np.clip(action, -1.0, 1.0)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        if oracle.done:
            task_ob, task_info = env.unwrapped.set_new_target(p_stack=settings.p_stack)
            oracle = oracles[task_info["privileged/target_task"]]
            oracle.reset(task_ob, task_info)
        rows["observations"].append(ob)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])
        rows["qvel"].append(info["prev_qvel"])
        if "prev_button_states" in info:
            rows["button_states"].append(info["prev_button_states"])
        ob = next_ob
    return rows


def healthy(name: DatasetName, rows: dict[str, list]) -> bool:
    """OGBench's check of scene episodes: the cube never leaves the view to the right
    (y >= 0.29) nor to the left (y <= -0.3) unless it is in the drawer (0.06 <= z <= 0.08)."""
    if name.domain != "scene":
        return True
    cube_xyz = np.asarray(rows["qpos"])[:, 14:17]
    y, z = cube_xyz[:, 1], cube_xyz[:, 2]
    outside_drawer = (y <= -0.3) & ((z < 0.06) | (z > 0.08))
    return not (np.any(y >= 0.29) or np.any(outside_drawer))


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """The package's oracles draw from NumPy's global generator: seed it, then restore it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _as_file(episodes: list[dict[str, list]]) -> dict[str, np.ndarray]:
    types = {"terminals": bool, "button_states": np.int64}
    keys = episodes[0].keys()
    return {
        key: np.concatenate([np.asarray(e[key], types.get(key, np.float32)) for e in episodes])
        for key in keys
    }


def collect_manipulation(
    dataset_name: str,
    episodes: int,
    seed: int = 0,
    episode_steps: int = EPISODE_STEPS,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """OGBench-format training and ``-val`` data for a manipulation dataset name:
    ``episodes`` training episodes and ``episodes // 10`` (at least 1) held-out ones, each
    ``episode_steps`` long, collected by the package's oracles as OGBench describes its
    data; reproducible for a seed."""
    name = parse_dataset_name(dataset_name)
    if episodes < 1 or episode_steps < 2:
        raise DatasetError("need --episodes >= 1 and --episode-steps >= 2")
    register_ogbench_tasks(name.env_id)
    env = gym.make(
        name.env_id, terminate_at_goal=False, mode="data_collection",
        max_episode_steps=episode_steps,
    )  # fmt: skip
    oracles, rng = _oracles(env, name), np.random.default_rng(seed)
    total = episodes + max(1, episodes // 10)
    collected, attempt = [], 0
    with _global_numpy_seed(seed):
        for _ in tqdm(range(total), unit="episode", disable=not progress, dynamic_ncols=True):
            while True:
                reset_seed = int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
                attempt += 1
                rows = oracle_episode(env, oracles, _settings(name, rng), rng, reset_seed)
                if healthy(name, rows):
                    break
            collected.append(rows)
    env.close()
    return _as_file(collected[:episodes]), _as_file(collected[episodes:])


def write_manipulation_dataset(
    dataset_name: str,
    out_dir: str | Path,
    episodes: int,
    seed: int = 0,
    episode_steps: int = EPISODE_STEPS,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Collect (:func:`collect_manipulation`) and write ``OUT/NAME.npz`` and
    ``OUT/NAME-val.npz`` atomically; existing files are kept unless ``overwrite``. The name
    and the ``ogbench`` package are checked first."""
    parse_dataset_name(dataset_name)
    if importlib.util.find_spec("ogbench") is None:
        raise ConfigError("ogbench-data needs the ogbench package: pip install 'qscore[offline]'")
    path = Path(out_dir) / f"{dataset_name}.npz"
    check_output(path, overwrite)
    train, val = collect_manipulation(dataset_name, episodes, seed, episode_steps, progress)
    held_out = path.with_name(f"{dataset_name}-val.npz")
    atomic_write_bytes(held_out, npz_bytes(val))
    atomic_write_bytes(path, npz_bytes(train))
    return path, held_out

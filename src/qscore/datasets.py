"""Offline datasets in OGBench's file layout: collect, write, read and check them.

A dataset is an ``.npz`` file with one row per observation and the trajectories one after
another, as OGBench stores its data:

* ``observations`` (N, obs_dim) and ``actions`` (N, action_dim), float32;
* ``terminals`` (N,): 1 on the last row of each trajectory. That row holds the final
  observation; its action is never used (there is no next observation).

qscore's own datasets add, per row, the step that starts there:

* ``rewards`` (N,): the reward of that step (0 on a trajectory's last row);
* ``masks`` (N,): 0 where that step ended the episode for good (a terminal state, not a
  time limit), else 1; the TD target bootstraps with gamma * mask;
* ``qpos`` and ``qvel`` for MuJoCo tasks, the simulator state at each observation.

OGBench's single-task datasets have no rewards: they are relabelled from ``qpos`` (and
``button_states``) by the ``ogbench`` package for the task of the environment. A dataset
``FILE.npz`` comes with ``FILE-val.npz``, held-out trajectories of the same collection
(OGBench's naming). Actions are in the training env's units, [-1, 1]^d (:mod:`qscore.envs`).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from qscore.atomic import atomic_write_bytes
from qscore.errors import ConfigError

if TYPE_CHECKING:
    from qscore.replay import Transition

ROW_KEYS = ("observations", "actions", "terminals")
"""The keys every dataset file holds (OGBench's)."""
REWARD_KEYS = ("rewards", "masks")
"""The keys that give a dataset its rewards without relabelling (qscore's datasets)."""


class DatasetError(ConfigError):
    """A dataset that cannot be used: unreadable, missing keys, wrong shapes or values."""


@dataclass
class Trajectory:
    """One collected episode: L steps, L + 1 observations."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: bool = False
    """Whether the last step ended in a terminal state (not a time limit)."""
    qpos: list[np.ndarray] = field(default_factory=list)
    qvel: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)


def val_path(path: str | Path) -> Path:
    """The held-out file that goes with ``path`` (OGBench: ``X.npz`` -> ``X-val.npz``)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"a dataset file must end in .npz, got {path}")
    return path.with_name(path.stem + "-val.npz")


def to_arrays(trajectories: list[Trajectory]) -> dict[str, np.ndarray]:
    """The rows of a dataset file for ``trajectories``, in their order."""
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (*ROW_KEYS, *REWARD_KEYS)}
    with_state = all(len(t.qpos) == len(t) + 1 for t in trajectories)
    if with_state:
        columns.update(qpos=[], qvel=[])
    for t in trajectories:
        steps = len(t)
        columns["observations"].append(np.stack(t.observations))
        actions = np.stack(t.actions)
        columns["actions"].append(np.concatenate([actions, np.zeros_like(actions[:1])]))
        ends = np.zeros(steps + 1, np.float32)
        ends[-1] = 1.0
        columns["terminals"].append(ends)
        columns["rewards"].append(np.append(np.asarray(t.rewards, np.float32), 0.0))
        masks = np.ones(steps + 1, np.float32)
        masks[steps - 1] = 0.0 if t.terminated else 1.0
        columns["masks"].append(masks)
        if with_state:
            columns["qpos"].append(np.stack(t.qpos))
            columns["qvel"].append(np.stack(t.qvel))
    return {k: np.concatenate(v).astype(np.float32) for k, v in columns.items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` of ``arrays`` in memory (to be written atomically)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def check_output(path: str | Path, overwrite: bool, val_fraction: float = 0.1) -> None:
    """Refuse an output name that is not ``.npz``, files that exist (unless ``overwrite``)
    and a held-out share outside (0, 1), before any collection starts."""
    for existing in (Path(path), val_path(path)):
        if existing.exists() and not overwrite:
            raise DatasetError(f"{existing} exists; pass --overwrite to replace it")
    if not 0 < val_fraction < 1:
        raise DatasetError(f"--val-fraction must be in (0, 1), got {val_fraction}")


def write_dataset(
    path: str | Path,
    trajectories: list[Trajectory],
    val_fraction: float = 0.1,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``path`` and its ``-val`` file (the last ``val_fraction`` of the trajectories,
    at least one), each atomically; refuses to replace existing files unless ``overwrite``."""
    check_output(path, overwrite, val_fraction)
    path, held_out = Path(path), val_path(path)
    trajectories = [t for t in trajectories if len(t) > 0]
    if len(trajectories) < 2:
        raise DatasetError("a dataset needs at least 2 non-empty trajectories (train and -val)")
    num_val = min(max(1, math.ceil(val_fraction * len(trajectories))), len(trajectories) - 1)
    train_bytes = npz_bytes(to_arrays(trajectories[:-num_val]))
    val_bytes = npz_bytes(to_arrays(trajectories[-num_val:]))
    atomic_write_bytes(held_out, val_bytes)
    atomic_write_bytes(path, train_bytes)
    return path, held_out


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a dataset file, checked: readable, the row keys present, one row per
    observation in every array, all values finite."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no dataset file at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DatasetError(f"cannot read dataset {path}: {error}") from None
    missing = [key for key in ROW_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"dataset {path} lacks key(s) {', '.join(missing)}")
    rows = len(arrays["observations"])
    for key, values in arrays.items():
        if values.ndim == 0 or len(values) != rows:
            raise DatasetError(
                f"dataset {path}: {key} has shape {values.shape}, expected {rows} rows"
            )
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise DatasetError(f"dataset {path}: {key} holds non-finite values")
    if arrays["observations"].ndim != 2 or arrays["actions"].ndim != 2:
        raise DatasetError(f"dataset {path}: observations and actions must be 2-D tables")
    if rows < 2 or arrays["terminals"][-1] != 1:
        raise DatasetError(f"dataset {path}: the last row must end a trajectory (terminals = 1)")
    return arrays


def check_dims(arrays: dict[str, np.ndarray], obs_dim: int, action_dim: int, name: str) -> None:
    """Refuse a dataset whose observation or action size is not the environment's."""
    got = (arrays["observations"].shape[1], arrays["actions"].shape[1])
    if got != (obs_dim, action_dim):
        raise DatasetError(
            f"dataset {name} has observations of size {got[0]} and actions of size {got[1]};"
            f" the environment has {obs_dim} and {action_dim}"
        )
    if np.any(np.abs(arrays["actions"]) > 1.0 + 1e-6):
        raise DatasetError(f"dataset {name} has actions outside [-1, 1]")


def to_transitions(arrays: dict[str, np.ndarray]) -> Transition:
    """The dataset's steps as replay rows (s, a, r, s', terminated, episode end): every
    row but a trajectory's last starts a step whose next observation is the next row."""
    from qscore.replay import Transition  # here: importing this module needs no JAX

    ends = arrays["terminals"].astype(bool)
    starts = ~ends
    following = np.concatenate([[False], starts[:-1]])
    last_step = np.concatenate([ends[1:], [True]])[starts]
    return Transition(
        obs=arrays["observations"][starts].astype(np.float32),
        action=arrays["actions"][starts].astype(np.float32),
        reward=arrays["rewards"][starts].astype(np.float32),
        next_obs=arrays["observations"][following].astype(np.float32),
        terminated=(1.0 - arrays["masks"][starts]).astype(np.float32),
        episode_end=last_step.astype(np.float32),
    )


def relabelled(arrays: dict[str, np.ndarray], env: Any, env_id: str) -> dict[str, np.ndarray]:
    """``arrays`` with OGBench's single-task rewards and masks for the task of ``env``
    (computed by the ``ogbench`` package from ``qpos`` and ``button_states``)."""
    try:
        from ogbench.relabel_utils import relabel_dataset
    except ImportError:
        raise DatasetError(
            f"relabelling for {env_id} needs the ogbench package: pip install 'qscore[offline]'"
        ) from None
    needed = ["qpos"] + (["button_states"] if ("scene" in env_id or "puzzle" in env_id) else [])
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise DatasetError(f"relabelling for {env_id} needs key(s) {', '.join(missing)}")
    labelled = dict(arrays)
    relabel_dataset(env_id, env.unwrapped, labelled)
    return labelled


def load_transitions(path: str | Path, env: Any, env_id: str) -> Transition:
    """The steps of dataset ``path`` for training on ``env`` (its sizes checked): rewards
    from the file, or relabelled by OGBench for its single-task environments."""
    arrays = read_arrays(path)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    check_dims(arrays, obs_dim, action_dim, str(path))
    if "singletask" in env_id and not all(key in arrays for key in REWARD_KEYS):
        arrays = relabelled(arrays, env, env_id)
    missing = [key for key in REWARD_KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"dataset {path} lacks key(s) {', '.join(missing)} and {env_id} is not an "
            "OGBench single-task environment whose rewards can be relabelled"
        )
    return to_transitions(arrays)


def replay_trajectories(rows: dict[str, np.ndarray]) -> list[Trajectory]:
    """A replay buffer's rows (:func:`qscore.replay.replay_state`, oldest first) cut into
    trajectories: a trajectory ends at an episode end or where the next row does not start
    from this row's next observation (the newest row ends one too)."""
    from qscore.replay import inferred_episode_ends

    ends = np.maximum(inferred_episode_ends(rows), rows["episode_end"])
    trajectories, current = [], Trajectory()
    for i in range(len(ends)):
        current.observations.append(rows["obs"][i])
        current.actions.append(rows["action"][i])
        current.rewards.append(float(rows["reward"][i]))
        if ends[i]:
            current.observations.append(rows["next_obs"][i])
            current.terminated = bool(rows["terminated"][i])
            trajectories.append(current)
            current = Trajectory()
    return trajectories


def _mujoco_state(env: Any) -> tuple[np.ndarray, np.ndarray] | None:
    data = getattr(env.unwrapped, "data", None)
    if data is None or not hasattr(data, "qpos"):
        return None
    return np.array(data.qpos, np.float32), np.array(data.qvel, np.float32)


Actor = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""Gives an action in [-1, 1]^d for an observation, drawing any randomness from the generator."""


def collect_episode(
    env: Any,
    act: Actor,
    rng: np.random.Generator,
    seed: int,
    noise: float,
    random_fraction: float,
) -> Trajectory:
    """One episode from ``env.reset(seed=seed)``: each step takes a uniform action with
    probability ``random_fraction``, else ``act``'s action plus N(0, noise^2), clipped."""
    obs, _ = env.reset(seed=seed)
    trajectory, action_dim = Trajectory(), env.action_space.shape[0]
    _record(trajectory, env, obs)
    while True:
        if rng.random() < random_fraction:
            action = rng.uniform(-1.0, 1.0, action_dim)
        else:
            action = np.asarray(act(trajectory.observations[-1], rng), np.float64)
            action = action + noise * rng.standard_normal(action_dim)
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        trajectory.actions.append(action)
        trajectory.rewards.append(float(reward))
        _record(trajectory, env, obs)
        if terminated or truncated:
            trajectory.terminated = bool(terminated)
            return trajectory


def _record(trajectory: Trajectory, env: Any, obs: Any) -> None:
    """Append an observation, and the MuJoCo state it comes from where the env has one."""
    trajectory.observations.append(np.asarray(obs, np.float32))
    state = _mujoco_state(env)
    if state is not None:
        trajectory.qpos.append(state[0])
        trajectory.qvel.append(state[1])


def collect(
    env: Any,
    act: Actor,
    episodes: int,
    seed: int = 0,
    noise: float = 0.0,
    random_fraction: float = 0.0,
    progress: bool = True,
) -> list[Trajectory]:
    """``episodes`` episodes of ``act`` on ``env`` (see :func:`collect_episode`); the same
    seed gives the same episodes for a deterministic env and actor."""
    if episodes < 2:
        raise DatasetError(f"--episodes must be >= 2 (train and -val), got {episodes}")
    if not noise >= 0 or not 0 <= random_fraction <= 1:
        raise DatasetError("need --noise >= 0 and --random-fraction in [0, 1]")
    rng = np.random.default_rng(seed)
    seeds = np.random.SeedSequence(seed).generate_state(episodes)
    bar = tqdm(range(episodes), unit="episode", disable=not progress, dynamic_ncols=True)
    return [collect_episode(env, act, rng, int(seeds[i]), noise, random_fraction) for i in bar]


class AgentActor:
    """A trained agent's evaluation policy as an :data:`Actor` (its own JAX key stream)."""

    def __init__(self, agent: Any, seed: int) -> None:
        import jax

        self.policy = agent.frozen()
        self.key = jax.random.PRNGKey(seed)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action, self.key = self.policy.act(obs, self.key, explore=False)
        return np.asarray(action)


def _run_env_and_agent(run_dir: Path, seed: int) -> tuple[Any, Any]:
    """The env of a run's task (seeded) and the agent of its newest checkpoint."""
    from qscore.api import load
    from qscore.config import RunConfig
    from qscore.envs import make_env
    from qscore.rundir import RunDirError, read_config, run_seeds

    if run_seeds(run_dir):
        raise RunDirError(f"{run_dir} holds several seeds; collect from one, e.g. its seed_S/")
    train = RunConfig.from_dict(read_config(run_dir)).train
    env = make_env(train.env_id, seed=seed, action_repeat=train.action_repeat)
    return env, load(run_dir).agent


def collect_from_run(
    run_dir: str | Path,
    episodes: int,
    seed: int = 0,
    noise: float = 0.0,
    random_fraction: float = 0.0,
    progress: bool = True,
) -> list[Trajectory]:
    """Episodes of the newest checkpoint of a single-seed run on its own task (D4RL-style:
    ``random_fraction`` = 1 gives a random dataset, a partly trained run a medium one)."""
    env, agent = _run_env_and_agent(Path(run_dir), seed)
    actor = AgentActor(agent, seed)
    return collect(env, actor, episodes, seed, noise, random_fraction, progress)


def replay_of_run(run_dir: str | Path) -> list[Trajectory]:
    """The replay buffer saved with a single-seed run's newest checkpoint, as trajectories."""
    from qscore.checkpoint import restore_newest_with_replay
    from qscore.replay import FIELDS

    _, _, _, rows = restore_newest_with_replay(run_dir, FIELDS)
    return replay_trajectories(rows)


def dataset_from_run(
    run_dir: str | Path,
    out: str | Path,
    episodes: int = 100,
    seed: int = 0,
    noise: float = 0.0,
    random_fraction: float = 0.0,
    replay: bool = False,
    val_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Path, Path, list[Trajectory]]:
    """A dataset file ``out`` and its ``-val`` file from a single-seed run, as ``qscore
    collect`` writes them: new episodes of its newest checkpoint (:func:`collect_from_run`)
    or, with ``replay``, its saved replay buffer (:func:`replay_of_run`). The output is
    checked before any collection; returns both paths and the trajectories written."""
    check_output(out, overwrite, val_fraction)
    if replay:
        trajectories = replay_of_run(run_dir)
    else:
        trajectories = collect_from_run(run_dir, episodes, seed, noise, random_fraction, progress)
    train, val = write_dataset(out, trajectories, val_fraction, overwrite)
    return train, val, trajectories
